// The TypeScript SDK v2 client (@modelcontextprotocol/client 2.4.0) in `auto` mode, for
// drawbridge's e2e tests: it connects to URL (argv[2]) with the bearer token in
// $MODERN_TOKEN, lists tools, calls `echo`, then tries `admin-delete`, and prints one JSON
// object with what it saw (era, protocol version, tool names, echo's text, and the
// forbidden call's outcome: HTTP status and error class, never a generic "refused").

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const url = process.argv[2];
const token = process.env.MODERN_TOKEN;
if (!url || !token) {
  console.error("usage: MODERN_TOKEN=... node modern_client.mjs URL");
  process.exit(2);
}

const client = new Client(
  { name: "drawbridge-e2e-modern", version: "1.0.0" },
  { versionNegotiation: { mode: "auto" } },
);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});

const report = {};
try {
  await client.connect(transport);
  report.era = client.getProtocolEra() ?? null;
  report.version = client.getNegotiatedProtocolVersion() ?? null;
  report.tools = (await client.listTools()).tools.map((t) => t.name);
  const echoed = await client.callTool({ name: "echo", arguments: { message: "modern" } });
  report.echo = echoed.content?.map((c) => c.text).join("") ?? null;
  try {
    const forbidden = await client.callTool({ name: "admin-delete", arguments: {} });
    report.forbidden = { outcome: "answered", isError: forbidden.isError ?? false };
  } catch (error) {
    report.forbidden = {
      outcome: "error",
      class: error?.constructor?.name ?? null,
      code: error?.code ?? null,
      status: error?.status ?? error?.data?.status ?? null,
      message: String(error?.message ?? error).slice(0, 300),
    };
  }
} catch (error) {
  report.failure = String(error?.stack ?? error).slice(0, 2000);
} finally {
  await client.close().catch(() => {});
}
console.log(JSON.stringify(report));
