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
//
// Usage: node conformance_server.mjs PORT EXECUTION_LOG

import { randomBytes, randomUUID } from "node:crypto";
import { appendFileSync } from "node:fs";
import http from "node:http";

import {
  McpServer,
  MissingRequiredClientCapabilityError,
  ResourceTemplate,
  createMcpHandler,
  createRequestStateCodec,
  fromJsonSchema,
  inputRequired,
  inputResponse,
} from "@modelcontextprotocol/server";
import { z } from "zod";

const [port, executionLog] = process.argv.slice(2);
if (!port || !executionLog) {
  console.error("usage: node conformance_server.mjs PORT EXECUTION_LOG");
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

// requestState integrity (the spec's MUST for state a server acts on): one key for the
// life of this process, which serves every round of a flow.
const STATE_CODEC = createRequestStateCodec({ key: randomBytes(32) });
const clientCapabilities = (ctx) =>
  ctx.mcpReq.envelope?.["io.modelcontextprotocol/clientCapabilities"] ?? {};

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

  // A parameter mirrored into an `Mcp-Param-Region` header (x-mcp-header, 2026-07-28).
  server.registerTool("test_header_param",
    {
      description: "Takes a region that the client also sends as a header",
      inputSchema: fromJsonSchema({
        type: "object",
        properties: { region: { type: "string", "x-mcp-header": "Region" } },
        required: ["region"],
      }),
    },
    async ({ region }) => {
      executed("test_header_param");
      return text(`region=${region}`);
    });

  // 2026-07-28 multi round-trip requests: a tool answers input-required until the client
  // retries with the responses it asked for. State that must come back is minted by the
  // SDK's HMAC codec (STATE_CODEC), so a tampered requestState is refused before the
  // handler runs; the handler reads the verified payload with ctx.mcpReq.requestState().
  const ask = (message, field) => inputRequired.elicit({
    message,
    requestedSchema: { type: "object", properties: { [field]: { type: "string" } }, required: [field] },
  });
  const confirm = () => inputRequired.elicit({
    message: "Please confirm",
    requestedSchema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] },
  });
  const answered = (ctx, key) => inputResponse(ctx.mcpReq.inputResponses, key);
  const field = (view, name) => (view.kind === "elicit" ? String(view.content?.[name] ?? "unknown") : "unknown");
  const state = (ctx) => ctx.mcpReq.requestState() ?? null;
  const mrtr = (name, run) => server.registerTool(name, { description: `${name} (input-required)`, inputSchema: noInput },
    async (_args, ctx) => {
      executed(name);
      return run(ctx);
    });

  mrtr("test_input_required_result_elicitation", (ctx) => {
    const view = answered(ctx, "user_name");
    if (view.kind !== "elicit") {
      return inputRequired({ inputRequests: { user_name: ask("What is your name?", "name") } });
    }
    return text(`Hello, ${field(view, "name")}!`);
  });
  mrtr("test_input_required_result_sampling", (ctx) => {
    const view = answered(ctx, "sample_request");
    if (view.kind !== "sampling") {
      return inputRequired({ inputRequests: { sample_request: inputRequired.createMessage({
        messages: [{ role: "user", content: { type: "text", text: "What is the capital of France?" } }],
        maxTokens: 100,
      }) } });
    }
    const content = view.result.content;
    return text(`Sampling result: ${Array.isArray(content) ? "no response" : content?.text ?? "no response"}`);
  });
  mrtr("test_input_required_result_list_roots", (ctx) => {
    const view = answered(ctx, "roots_request");
    if (view.kind !== "roots") {
      return inputRequired({ inputRequests: { roots_request: inputRequired.listRoots() } });
    }
    return text(`Found ${view.roots.length} root(s)`);
  });
  mrtr("test_input_required_result_request_state", async (ctx) => {
    const view = answered(ctx, "confirm");
    if (state(ctx)?.kind === "request-state" && view.kind === "elicit" && view.content?.ok === true) {
      return text("state-ok: requestState validated");
    }
    return inputRequired({ inputRequests: { confirm: confirm() },
      requestState: await STATE_CODEC.mint({ kind: "request-state", nonce: randomUUID() }) });
  });
  mrtr("test_input_required_result_multiple_inputs", async (ctx) => {
    const name = answered(ctx, "user_name");
    const greeting = answered(ctx, "greeting");
    const roots = answered(ctx, "client_roots");
    if (state(ctx)?.kind === "multiple-inputs" && name.kind === "elicit" && greeting.kind === "sampling"
        && roots.kind === "roots") {
      const said = Array.isArray(greeting.result.content) ? "Hello there!" : greeting.result.content?.text;
      return text(`Name: ${field(name, "name")}; Greeting: ${said}; Roots: ${roots.roots.length}`);
    }
    return inputRequired({
      inputRequests: {
        user_name: ask("What is your name?", "name"),
        greeting: inputRequired.createMessage({
          messages: [{ role: "user", content: { type: "text", text: "Generate a greeting" } }], maxTokens: 50,
        }),
        client_roots: inputRequired.listRoots(),
      },
      requestState: await STATE_CODEC.mint({ kind: "multiple-inputs", nonce: randomUUID() }),
    });
  });
  mrtr("test_input_required_result_multi_round", async (ctx) => {
    const previous = state(ctx);
    const step1 = answered(ctx, "step1");
    const step2 = answered(ctx, "step2");
    if (previous?.round === 1 && step1.kind === "elicit") {
      return inputRequired({ inputRequests: { step2: ask("Step 2: What is your favorite color?", "color") },
        requestState: await STATE_CODEC.mint({ round: 2, name: field(step1, "name"), nonce: randomUUID() }) });
    }
    if (previous?.round === 2 && step2.kind === "elicit") {
      return text(`Multi-round complete for ${previous.name} who likes ${field(step2, "color")}`);
    }
    return inputRequired({ inputRequests: { step1: ask("Step 1: What is your name?", "name") },
      requestState: await STATE_CODEC.mint({ round: 1, nonce: randomUUID() }) });
  });
  mrtr("test_input_required_result_tampered_state", async (ctx) => {
    if (state(ctx)?.kind === "tamper-test" && answered(ctx, "confirm").kind === "elicit") {
      return text("integrity-ok: state verified");
    }
    return inputRequired({ inputRequests: { confirm: confirm() },
      requestState: await STATE_CODEC.mint({ kind: "tamper-test", nonce: randomUUID() }) });
  });
  mrtr("test_input_required_result_capabilities", async (ctx) => {
    const declared = clientCapabilities(ctx);
    const received = Object.keys(ctx.mcpReq.inputResponses ?? {});
    if (received.length > 0) return text(`capabilities-ok: received ${received.join(",")}`);
    const inputRequests = {};
    if (declared.elicitation) inputRequests.elicit_input = ask("Elicitation input", "value");
    if (declared.sampling) {
      inputRequests.sample_input = inputRequired.createMessage({
        messages: [{ role: "user", content: { type: "text", text: "Sample request" } }], maxTokens: 50,
      });
    }
    if (Object.keys(inputRequests).length === 0) return text("No supported capabilities declared");
    return inputRequired({ inputRequests,
      requestState: await STATE_CODEC.mint({ kind: "capabilities-test", nonce: randomUUID() }) });
  });

  // Diagnostic tools of the server-stateless scenario.
  server.registerTool("test_missing_capability", { description: "Needs the sampling capability", inputSchema: noInput },
    async () => {
      executed("test_missing_capability");
      return text("Success");
    });
  server.registerTool("test_streaming_elicitation", { description: "Streams progress, then asks", inputSchema: noInput },
    async (_args, ctx) => {
      executed("test_streaming_elicitation");
      await ctx.mcpReq.notify({ method: "notifications/progress",
        params: { progressToken: ctx.mcpReq._meta?.progressToken ?? "stream", progress: 50, total: 100 } });
      return text("Streaming complete");
    });
  server.registerTool("test_logging_tool", { description: "Logs at info", inputSchema: noInput },
    async (_args, ctx) => {
      executed("test_logging_tool");
      await ctx.mcpReq.log("info", "test_logging_tool ran");
      return text("Logging complete");
    });
  server.registerTool("test_trigger_tool_change", { description: "Announces a tool list change", inputSchema: noInput },
    async () => {
      executed("test_trigger_tool_change");
      handler.notify.toolsChanged();
      return text("tools changed");
    });
  server.registerTool("test_trigger_prompt_change", { description: "Announces a prompt list change", inputSchema: noInput },
    async () => {
      executed("test_trigger_prompt_change");
      handler.notify.promptsChanged();
      return text("prompts changed");
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

// prompts/get may answer input-required too (a request that is not a tool call).
function registerInputRequiredPrompt(server) {
  server.registerPrompt("test_input_required_result_prompt",
    { title: "Prompt needing input", description: "Asks for the context it should use" },
    async (ctx) => {
      const view = inputResponse(ctx.mcpReq.inputResponses, "user_context");
      if (view.kind !== "elicit") {
        return inputRequired({ inputRequests: { user_context: inputRequired.elicit({
          message: "What context should the prompt use?",
          requestedSchema: { type: "object", properties: { context: { type: "string" } }, required: ["context"] },
        }) } });
      }
      return { messages: [{ role: "user",
        content: { type: "text", text: `Prompt with context: ${view.content?.context ?? "unknown"}` } }] };
    });
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
      requestState: { verify: STATE_CODEC.verify },
    },
  );
  registerTools(server);
  registerResources(server);
  registerPrompts(server);
  registerInputRequiredPrompt(server);
  // A tool error is a result (isError); a missing client capability must be the
  // protocol error -32021 instead, so it is raised in front of McpServer's tools/call
  // handler (the SDK keeps handlers in a private map; this is a test fixture).
  const handlers = server.server._requestHandlers;
  const callTool = handlers.get("tools/call");
  handlers.set("tools/call", (request, ctx) => {
    if (request.params?.name === "test_missing_capability" && !clientCapabilities(ctx).sampling) {
      throw new MissingRequiredClientCapabilityError({ requiredCapabilities: { sampling: {} } });
    }
    return callTool(request, ctx);
  });
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
