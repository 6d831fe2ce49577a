// The MCP server the conformance suite (@modelcontextprotocol/conformance) is run against,
// directly and through drawbridge, by test_conformance.py. Written for drawbridge with the
// TypeScript SDK v2 (@modelcontextprotocol/server 2.4.0): `createMcpHandler` serves both
// protocol generations from one endpoint — 2026-07-28 requests (per-request `_meta`,
// `server/discover`) and 2025-era traffic (the SDK's stateless legacy fallback, so no
// Mcp-Session-Id). It exposes the tools, resources and prompts under the names the
// suite's server scenarios ask for (`test_*`, `test://...`); the suite's own example
// server is not published to npm, so this is drawbridge's own fixture with the same
// interface, not a copy of it. Scenarios this server does not implement fail directly
// too and are reported as such by the test, never counted against the gateway.
//
// Every tool that RUNS appends one JSON line to EXECUTION_LOG, synchronously: the tests
// compare what the upstream executed through the gateway with what it executed directly.
// Every POST body is appended, verbatim, to REQUEST_LOG when one is given (the trace
// context test asserts on the bytes the upstream received).
//
// Usage: node conformance_server.mjs PORT EXECUTION_LOG [REQUEST_LOG]

import { appendFileSync } from "node:fs";
import http from "node:http";

import {
  McpServer,
  ResourceTemplate,
  createMcpHandler,
  fromJsonSchema,
  inputRequired,
  inputResponse,
} from "@modelcontextprotocol/server";
import { z } from "zod";

const [port, executionLog, requestLog] = process.argv.slice(2);
if (!port || !executionLog) {
  console.error("usage: node conformance_server.mjs PORT EXECUTION_LOG [REQUEST_LOG]");
  process.exit(2);
}

function executed(tool, detail = {}) {
  appendFileSync(executionLog, JSON.stringify({ tool, ...detail }) + "\n");
}

// A 1x1 PNG and a tiny WAV header: content, not meaning, is what the scenarios check.
const PNG_1X1 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const WAV_HEADER = Buffer.from(
  "RIFF$\u0000\u0000\u0000WAVEfmt \u0010\u0000\u0000\u0000\u0001\u0000\u0001\u0000\u0040\u001f\u0000\u0000\u0080\u003e\u0000\u0000\u0002\u0000\u0010\u0000data\u0000\u0000\u0000\u0000",
  "latin1",
).toString("base64");

const text = (value) => ({ content: [{ type: "text", text: value }] });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const noInput = z.object({});

function registerTools(server) {
  server.registerTool("test_simple_text", { description: "Returns one text block", inputSchema: noInput },
    async () => {
      executed("test_simple_text");
      return text("This is a simple text response for testing.");
    });
  server.registerTool("test_image_content", { description: "Returns one image block", inputSchema: noInput },
    async () => {
      executed("test_image_content");
      return { content: [{ type: "image", data: PNG_1X1, mimeType: "image/png" }] };
    });
  server.registerTool("test_audio_content", { description: "Returns one audio block", inputSchema: noInput },
    async () => {
      executed("test_audio_content");
      return { content: [{ type: "audio", data: WAV_HEADER, mimeType: "audio/wav" }] };
    });
  server.registerTool("test_embedded_resource",
    { description: "Returns an embedded resource", inputSchema: noInput },
    async () => {
      executed("test_embedded_resource");
      return {
        content: [{
          type: "resource",
          resource: { uri: "test://embedded-resource", mimeType: "text/plain",
            text: "This is an embedded resource content." },
        }],
      };
    });
  server.registerTool("test_multiple_content_types",
    { description: "Returns text, image and resource blocks", inputSchema: noInput },
    async () => {
      executed("test_multiple_content_types");
      return {
        content: [
          { type: "text", text: "Multiple content types test:" },
          { type: "image", data: PNG_1X1, mimeType: "image/png" },
          { type: "resource", resource: { uri: "test://mixed-content-resource",
            mimeType: "application/json", text: JSON.stringify({ test: "data", value: 123 }) } },
        ],
      };
    });
  server.registerTool("test_tool_with_logging",
    { description: "Logs three messages while it runs", inputSchema: noInput },
    async (_args, ctx) => {
      executed("test_tool_with_logging");
      for (const step of ["Tool execution started", "Tool processing data", "Tool execution completed"]) {
        await ctx.mcpReq.notify({ method: "notifications/message", params: { level: "info", data: step } });
        await sleep(20);
      }
      return text("Tool with logging executed successfully");
    });
  server.registerTool("test_tool_with_progress",
    { description: "Reports progress 0, 50, 100", inputSchema: noInput },
    async (_args, ctx) => {
      executed("test_tool_with_progress");
      const progressToken = ctx.mcpReq._meta?.progressToken ?? 0;
      for (const progress of [0, 50, 100]) {
        await ctx.mcpReq.notify({
          method: "notifications/progress",
          params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
        });
        await sleep(20);
      }
      return text(String(progressToken));
    });
  server.registerTool("test_error_handling", { description: "Always fails", inputSchema: noInput },
    async () => {
      executed("test_error_handling");
      throw new Error("This tool intentionally returns an error for testing");
    });
  server.registerTool("test_sampling",
    { description: "Asks the client for a completion", inputSchema: z.object({ prompt: z.string() }) },
    async ({ prompt }, ctx) => {
      executed("test_sampling");
      const result = await ctx.mcpReq.requestSampling({
        messages: [{ role: "user", content: { type: "text", text: prompt } }],
        maxTokens: 100,
      });
      return text(`LLM response: ${result.content?.text ?? "No response"}`);
    });
  server.registerTool("test_elicitation",
    { description: "Asks the user for input", inputSchema: z.object({ message: z.string() }) },
    async ({ message }, ctx) => {
      executed("test_elicitation");
      const result = await ctx.mcpReq.elicitInput({
        message,
        requestedSchema: {
          type: "object",
          properties: { response: { type: "string", description: "User's response" } },
          required: ["response"],
        },
      });
      return text(`User response: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`);
    });
  // A JSON Schema 2020-12 input schema with $defs, $anchor, composition and
  // conditional keywords, handed out as written (a client must not strip them).
  server.registerTool("json_schema_2020_12_tool",
    {
      description: "Takes a name and an address (JSON Schema 2020-12)",
      inputSchema: fromJsonSchema({
        $schema: "https://json-schema.org/draft/2020-12/schema",
        type: "object",
        $defs: {
          address: {
            $anchor: "address",
            type: "object",
            properties: { street: { type: "string" }, city: { type: "string" } },
          },
        },
        properties: {
          name: { type: "string" },
          address: { $ref: "#/$defs/address" },
          contact: { anyOf: [{ type: "string" }, { type: "null" }] },
        },
        allOf: [{ anyOf: [{ required: ["name"] }, { required: ["address"] }] }],
        if: { required: ["address"] },
        then: { properties: { name: { type: "string" } } },
        else: { properties: { contact: { type: "string" } } },
        additionalProperties: false,
      }),
    },
    async (args) => {
      executed("json_schema_2020_12_tool");
      return text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`);
    });

  // 2026-07-28 multi round-trip requests: the tool answers input-required until the
  // client retries with the responses it asked for.
  server.registerTool("test_input_required_result_elicitation",
    { description: "Needs an elicitation answer", inputSchema: noInput },
    async (_args, ctx) => {
      executed("test_input_required_result_elicitation");
      const answer = inputResponse(ctx.mcpReq.inputResponses, "user_input");
      if (answer.kind !== "elicit") {
        return inputRequired({
          inputRequests: {
            user_input: inputRequired.elicit({
              message: "What is your name?",
              requestedSchema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
            }),
          },
        });
      }
      return text(`Hello, ${answer.content?.name ?? "unknown"}`);
    });
  server.registerTool("test_input_required_result_sampling",
    { description: "Needs a sampling answer", inputSchema: noInput },
    async (_args, ctx) => {
      executed("test_input_required_result_sampling");
      const answer = inputResponse(ctx.mcpReq.inputResponses, "llm_response");
      if (answer.kind !== "sampling") {
        return inputRequired({
          inputRequests: {
            llm_response: inputRequired.createMessage({
              messages: [{ role: "user", content: { type: "text", text: "What is the capital of France?" } }],
              maxTokens: 100,
            }),
          },
        });
      }
      const content = answer.result.content;
      return text(`LLM said: ${Array.isArray(content) ? "" : content?.text ?? ""}`);
    });
  server.registerTool("test_input_required_result_list_roots",
    { description: "Needs the client's roots", inputSchema: noInput },
    async (_args, ctx) => {
      executed("test_input_required_result_list_roots");
      const answer = inputResponse(ctx.mcpReq.inputResponses, "client_roots");
      if (answer.kind !== "roots") {
        return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
      }
      return text(`Roots: ${answer.roots.map((root) => root.uri).join(", ")}`);
    });
  server.registerTool("test_input_required_result_request_state",
    { description: "Round-trips a requestState", inputSchema: noInput },
    async (_args, ctx) => {
      executed("test_input_required_result_request_state");
      const answer = inputResponse(ctx.mcpReq.inputResponses, "confirm");
      const state = ctx.mcpReq.requestState?.() ?? null;
      if (answer.kind !== "elicit" || state === null) {
        return inputRequired({
          inputRequests: {
            confirm: inputRequired.elicit({
              message: "Please confirm",
              requestedSchema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] },
            }),
          },
          requestState: Buffer.from(JSON.stringify({ round: 1 })).toString("base64url"),
        });
      }
      return text(`state=${typeof state === "string" ? state : JSON.stringify(state)} action=${answer.action}`);
    });
}

function registerResources(server) {
  server.registerResource("static-text", "test://static-text",
    { title: "Static Text Resource", description: "A static text resource", mimeType: "text/plain" },
    async () => ({
      contents: [{ uri: "test://static-text", mimeType: "text/plain",
        text: "This is the content of the static text resource." }],
    }));
  server.registerResource("static-binary", "test://static-binary",
    { title: "Static Binary Resource", description: "A PNG", mimeType: "image/png" },
    async () => ({ contents: [{ uri: "test://static-binary", mimeType: "image/png", blob: PNG_1X1 }] }));
  server.registerResource("template", new ResourceTemplate("test://template/{id}/data", { list: undefined }),
    { title: "Resource Template", description: "Parameter substitution", mimeType: "application/json" },
    async (uri, { id }) => ({
      contents: [{ uri: uri.toString(), mimeType: "application/json",
        text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }],
    }));
  server.registerResource("watched-resource", "test://watched-resource",
    { title: "Watched Resource", description: "A subscribable resource", mimeType: "text/plain" },
    async () => ({
      contents: [{ uri: "test://watched-resource", mimeType: "text/plain", text: "Watched resource content" }],
    }));
}

function registerPrompts(server) {
  server.registerPrompt("test_simple_prompt", { title: "Simple Test Prompt", description: "No arguments" },
    async () => ({
      messages: [{ role: "user", content: { type: "text", text: "This is a simple prompt for testing." } }],
    }));
  server.registerPrompt("test_prompt_with_arguments",
    { title: "Prompt With Arguments", description: "Two arguments",
      argsSchema: z.object({ arg1: z.string(), arg2: z.string() }) },
    async ({ arg1, arg2 }) => ({
      messages: [{ role: "user",
        content: { type: "text", text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
    }));
  server.registerPrompt("test_prompt_with_embedded_resource",
    { title: "Prompt With Embedded Resource", description: "Embeds a resource",
      argsSchema: z.object({ resourceUri: z.string() }) },
    async ({ resourceUri }) => ({
      messages: [
        { role: "user", content: { type: "resource",
          resource: { uri: resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." } } },
        { role: "user", content: { type: "text", text: "Please process the embedded resource above." } },
      ],
    }));
  server.registerPrompt("test_prompt_with_image", { title: "Prompt With Image", description: "An image" },
    async () => ({
      messages: [
        { role: "user", content: { type: "image", data: PNG_1X1, mimeType: "image/png" } },
        { role: "user", content: { type: "text", text: "Please analyze the image above." } },
      ],
    }));
}

function buildServer() {
  const server = new McpServer(
    { name: "drawbridge-conformance-upstream", version: "1.0.0" },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
    },
  );
  registerTools(server);
  registerResources(server);
  registerPrompts(server);
  // 2025-era methods the high-level API leaves to the application.
  server.server.setRequestHandler("resources/subscribe", async () => ({}));
  server.server.setRequestHandler("resources/unsubscribe", async () => ({}));
  server.server.setRequestHandler("completion/complete", async () => ({
    completion: { values: [], total: 0, hasMore: false },
  }));
  return server;
}

const handler = createMcpHandler(() => buildServer());

// DNS-rebinding protection, as the suite expects of a server on loopback: only loopback
// Host values (drawbridge sends the upstream's own authority as Host) are served.
const LOOPBACK_HOSTS = new Set([`127.0.0.1:${port}`, `localhost:${port}`]);

// node:http to the handler's web-standard fetch face, and back.
const httpServer = http.createServer(async (req, res) => {
  try {
    if (!LOOPBACK_HOSTS.has(req.headers.host ?? "")) {
      res.writeHead(403, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: null,
        error: { code: -32000, message: "Host not allowed" } }));
      return;
    }
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    if (requestLog && req.method === "POST") {
      appendFileSync(requestLog, JSON.stringify({ body: body.toString("utf8") }) + "\n");
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
    console.error("conformance_server: request failed:", error);
    if (!res.headersSent) res.writeHead(500);
    res.end();
  }
});

httpServer.listen(Number(port), "127.0.0.1", () => {
  console.log(`conformance upstream on http://127.0.0.1:${port}/mcp`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    httpServer.close();
    process.exit(0);
  });
}
