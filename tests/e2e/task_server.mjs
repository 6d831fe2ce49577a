// A task-capable MCP server (the tasks of protocol revision 2025-11-25) for drawbridge's
// e2e tests, built with the TypeScript SDK v1's experimental tasks API: one shared
// InMemoryTaskStore behind a stateless Streamable HTTP transport, so that, like any
// server that sees one credential for every user, it shows every task to whoever asks.
//
// Tool `work` is a task tool: `tools/call` with `task` creates a task that completes at
// once with "done: <label>". Every task the server creates is appended to the execution
// log ({"kind":"task","taskId","label"}); every request that ARRIVES is appended to the
// request log before the SDK reads it ({"method","headers","body"}), so a test asserts
// that a refused request never reached the server at all.
//
// Usage: node task_server.mjs PORT EXECUTION_LOG REQUEST_LOG

import { appendFileSync } from "node:fs";
import http from "node:http";

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  InMemoryTaskMessageQueue,
  InMemoryTaskStore,
} from "@modelcontextprotocol/sdk/experimental/tasks/stores/in-memory.js";
import * as z from "zod/v4";

const [port, executionLog, requestLog] = process.argv.slice(2);
if (!port || !executionLog || !requestLog) {
  console.error("usage: node task_server.mjs PORT EXECUTION_LOG REQUEST_LOG");
  process.exit(2);
}

const taskStore = new InMemoryTaskStore();
const taskMessageQueue = new InMemoryTaskMessageQueue();

function buildServer() {
  const server = new McpServer(
    { name: "task-server", version: "1.0.0" },
    {
      capabilities: { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } },
      taskStore,
      taskMessageQueue,
    },
  );
  server.experimental.tasks.registerToolTask(
    "work",
    { description: "Works as a task", inputSchema: { label: z.string() } },
    {
      async createTask({ label }, { taskStore: store, taskRequestedTtl }) {
        const task = await store.createTask({ ttl: taskRequestedTtl ?? 60000 });
        appendFileSync(executionLog, JSON.stringify({ kind: "task", taskId: task.taskId, label }) + "\n");
        await store.storeTaskResult(task.taskId, "completed", {
          content: [{ type: "text", text: `done: ${label}` }],
        });
        return { task };
      },
      async getTask(_args, { taskId, taskStore: store }) {
        return await store.getTask(taskId);
      },
      async getTaskResult(_args, { taskId, taskStore: store }) {
        return await store.getTaskResult(taskId);
      },
    },
  );
  return server;
}

const httpServer = http.createServer(async (req, res) => {
  try {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString("utf8");
    appendFileSync(
      requestLog,
      JSON.stringify({ method: req.method, headers: req.headers, body: text }) + "\n",
    );
    if (req.method !== "POST") {
      res.writeHead(405).end();
      return;
    }
    const server = buildServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on("close", () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, text ? JSON.parse(text) : undefined);
  } catch (error) {
    console.error("task-server:", error);
    if (!res.headersSent) res.writeHead(500).end();
  }
});

httpServer.listen(Number(port), "127.0.0.1", () => {
  console.log(`task-server listening on 127.0.0.1:${port}`);
});
