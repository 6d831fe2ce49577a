// A modern-only MCP server (protocol revision 2026-07-28) for drawbridge's e2e tests,
// built the way the TypeScript SDK v2 documents it: `createMcpHandler` with
// `legacy: 'reject'`, so a client that does not speak 2026-07-28 (no `server/discover`,
// no per-request `_meta`) gets nothing from it. Served with plain node:http on 127.0.0.1.
//
// Tools: `echo` (the tests' policy allows it) and `admin-delete` (the policy forbids it).
// Every tool that RUNS appends one JSON line to the execution log, synchronously, so a
// test asserts on what the server executed, not on what the gateway answered.
//
// With a third argument, every request that ARRIVES is appended to that log too, before
// the SDK reads it ({"kind":"request","method","url","headers","body"}), so a test can
// assert that a refused request never reached the server at all.
//
// Usage: node modern_server.mjs PORT EXECUTION_LOG [REQUEST_LOG]

import { appendFileSync } from "node:fs";
import http from "node:http";

import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";

const [port, executionLog, requestLog] = process.argv.slice(2);
if (!port || !executionLog) {
  console.error("usage: node modern_server.mjs PORT EXECUTION_LOG [REQUEST_LOG]");
  process.exit(2);
}

function executed(tool, args) {
  appendFileSync(executionLog, JSON.stringify({ tool, args }) + "\n");
}

function buildServer() {
  const server = new McpServer({ name: "modern-only", version: "1.0.0" });
  server.registerTool(
    "echo",
    { description: "Echoes its message", inputSchema: z.object({ message: z.string() }) },
    async ({ message }) => {
      executed("echo", { message });
      return { content: [{ type: "text", text: `Echo: ${message}` }] };
    },
  );
  server.registerTool(
    "admin-delete",
    { description: "Deletes everything (forbidden by the gateway's policy)" },
    async () => {
      executed("admin-delete", {});
      return { content: [{ type: "text", text: "deleted" }] };
    },
  );
  return server;
}

const handler = createMcpHandler(() => buildServer(), { legacy: "reject" });

// node:http to the handler's web-standard fetch face, and back.
const httpServer = http.createServer(async (req, res) => {
  try {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    if (requestLog) {
      appendFileSync(
        requestLog,
        JSON.stringify({
          kind: "request",
          method: req.method,
          url: req.url,
          headers: req.headers,
          body: body.toString("utf8"),
        }) + "\n",
      );
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
    }
    const request = new Request(`http://${req.headers.host ?? "127.0.0.1"}${req.url}`, {
      method: req.method,
      headers,
      body: ["GET", "HEAD"].includes(req.method) || body.length === 0 ? undefined : body,
    });
    const response = await handler.fetch(request);
    const out = {};
    response.headers.forEach((value, name) => {
      out[name] = value;
    });
    res.writeHead(response.status, out);
    if (response.body) {
      for await (const chunk of response.body) res.write(chunk);
    }
    res.end();
  } catch (error) {
    console.error("modern_server: request failed:", error);
    if (!res.headersSent) res.writeHead(500);
    res.end();
  }
});

httpServer.listen(Number(port), "127.0.0.1", () => {
  console.log(`modern-only MCP server on http://127.0.0.1:${port}/mcp`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    httpServer.close();
    process.exit(0);
  });
}
