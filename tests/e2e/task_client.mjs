// The TypeScript SDK v1's client driving the tasks of protocol revision 2025-11-25, for
// drawbridge's e2e tests. The bearer token is given (the test signs in with
// headless_oauth); the SDK does everything else.
//
// Usage: node task_client.mjs URL TOKEN own LABEL   -- call `work` as a task, follow it
//        node task_client.mjs URL TOKEN use TASK_ID -- tasks/get, tasks/result, tasks/cancel
//
// Prints one JSON object on stdout; exits 1 on an unexpected error.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, token, action, arg] = process.argv.slice(2);

async function connect() {
  const client = new Client({ name: "task-client", version: "1.0.0" }, { capabilities: {} });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return client;
}

function text(result) {
  return (result?.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
}

async function outcome(call) {
  try {
    const value = await call();
    return { ok: true, value };
  } catch (e) {
    return { ok: false, code: e.code, message: String(e.message) };
  }
}

async function own(client, label) {
  const out = { protocol: client.getServerVersion() ? "connected" : "none", messages: [] };
  const stream = client.experimental.tasks.callToolStream(
    { name: "work", arguments: { label } },
    CallToolResultSchema,
    { task: { ttl: 60000 } },
  );
  for await (const message of stream) {
    out.messages.push(message.type);
    if (message.type === "taskCreated") out.taskId = message.task.taskId;
    if (message.type === "result") out.result = text(message.result);
    if (message.type === "error") out.error = String(message.error?.message);
  }
  const got = await client.experimental.tasks.getTask(out.taskId);
  out.status = got.status;
  out.gotTaskId = got.taskId;
  const again = await client.experimental.tasks.getTaskResult(out.taskId, CallToolResultSchema);
  out.again = text(again);
  const listed = await client.experimental.tasks.listTasks();
  out.listed = listed.tasks.map((t) => t.taskId);
  return out;
}

async function use(client, taskId) {
  const tasks = client.experimental.tasks;
  return {
    get: await outcome(() => tasks.getTask(taskId)),
    result: await outcome(() => tasks.getTaskResult(taskId, CallToolResultSchema)),
    cancel: await outcome(() => tasks.cancelTask(taskId)),
  };
}

try {
  const client = await connect();
  const out = action === "own" ? await own(client, arg) : await use(client, arg);
  await client.close();
  console.log(JSON.stringify(out));
} catch (e) {
  console.error(e);
  process.exit(1);
}
