// A canonical MCP server built with the official TypeScript SDK, the way its documentation
// builds one: `createMcpExpressApp` (Express 5 + express.json()), stateful Streamable HTTP
// (`StreamableHTTPServerTransport`) with an event store (the SDK's EventStore interface)
// so that a GET with `Last-Event-ID` replays stored answers, and the legacy HTTP+SSE transport
// (`SSEServerTransport`: GET /sse + POST /messages?sessionId=…) in the same process.
//
// It exists to be attacked through drawbridge. Every tool execution, prompt get and
// resource read appends one JSON line to the execution log (synchronously, before the
// answer is written), so a test can tell what the server EXECUTED, whatever the gateway
// answered:  {"tool": name, "args": {...}, "transport": "streamable"|"sse", "session": id}
//
// Usage: PORT=… EXEC_LOG=/path/exec.jsonl node ts_server.mjs   (listens on 127.0.0.1)

import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import * as z from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const HOST = '127.0.0.1';
const port = Number(process.env.PORT);
const execLog = process.env.EXEC_LOG;
if (!port || !execLog) {
  console.error('usage: PORT=… EXEC_LOG=… node ts_server.mjs');
  process.exit(2);
}

function executed(kind, name, args, transport, session) {
  appendFileSync(execLog, JSON.stringify({ kind, [kind]: name, args, transport, session }) + '\n');
}

// One McpServer per session, as the SDK's examples do.
function buildServer(transportName, sessionOf) {
  const server = new McpServer({ name: 'adversarial-ts', version: '1.0.0' });
  const tool = (name, description) =>
    server.registerTool(
      name,
      {
        description,
        inputSchema: { message: z.string().optional(), target: z.string().optional() },
      },
      async (args, extra) => {
        executed('tool', name, args, transportName, sessionOf(extra));
        const text = `${name}: ${args.message ?? args.target ?? ''}`;
        return { content: [{ type: 'text', text }] };
      },
    );
  tool('echo', 'Echoes its message (allowed by the policy).');
  tool('admin-delete', 'Deletes everything (forbidden by the policy).');
  tool('get-secret', 'Returns a secret (forbidden by the policy).');
  // Nested arguments, for argument rules on JSON pointers (/options/depth).
  server.registerTool(
    'search',
    {
      description: 'Searches to a depth (argument rules bound it).',
      inputSchema: {
        query: z.string(),
        options: z.object({ depth: z.number(), mode: z.string().optional() }),
      },
    },
    async (args, extra) => {
      executed('tool', 'search', args, transportName, sessionOf(extra));
      return { content: [{ type: 'text', text: `search: ${args.query}` }] };
    },
  );

  const prompt = (name) =>
    server.registerPrompt(name, { description: `prompt ${name}` }, async (extra) => {
      executed('prompt', name, {}, transportName, sessionOf(extra));
      return { messages: [{ role: 'user', content: { type: 'text', text: `prompt ${name}` } }] };
    });
  prompt('greeting'); // allowed
  prompt('forbidden-prompt');

  const resource = (name, uri) =>
    server.registerResource(name, uri, { mimeType: 'text/plain' }, async (url, extra) => {
      executed('resource', url.href, {}, transportName, sessionOf(extra));
      return { contents: [{ uri: url.href, text: `resource ${name}` }] };
    });
  resource('public-info', 'test://public/info'); // allowed
  resource('secret-key', 'test://secret/key');
  return server;
}

// An event store (the SDK's EventStore interface) that keeps every event in order. The
// SDK's example store orders events by `<stream>_<Date.now()>_<random>`, so two events
// of the same millisecond replay in random order; a counter keeps replays deterministic.
class OrderedEventStore {
  constructor() {
    this.events = []; // { id, streamId, message }, in the order they were stored
    this.counter = 0;
  }

  async storeEvent(streamId, message) {
    this.counter += 1;
    const id = `${streamId}_${String(this.counter).padStart(8, '0')}`;
    this.events.push({ id, streamId, message });
    return id;
  }

  async replayEventsAfter(lastEventId, { send }) {
    const index = this.events.findIndex((event) => event.id === lastEventId);
    if (index < 0) return '';
    const { streamId } = this.events[index];
    for (const event of this.events.slice(index + 1)) {
      if (event.streamId === streamId) await send(event.id, event.message);
    }
    return streamId;
  }
}

const app = createMcpExpressApp({ host: HOST });

const jsonRpcError = (code, message) => ({ jsonrpc: '2.0', error: { code, message }, id: null });

// --- Streamable HTTP, stateful, resumable -------------------------------------------
const streamable = {}; // session id -> transport

app.all('/mcp', async (req, res) => {
  try {
    const sessionId = req.headers['mcp-session-id'];
    let transport = typeof sessionId === 'string' ? streamable[sessionId] : undefined;
    if (!transport) {
      if (sessionId !== undefined || req.method !== 'POST' || !isInitializeRequest(req.body)) {
        res.status(400).json(jsonRpcError(-32000, 'Bad Request: no valid session'));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        eventStore: new OrderedEventStore(),
        onsessioninitialized: (id) => {
          streamable[id] = transport;
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) delete streamable[transport.sessionId];
      };
      const server = buildServer('streamable', (extra) => extra?.sessionId ?? transport.sessionId);
      await server.connect(transport);
    }
    await transport.handleRequest(req, res, req.body);
  } catch (error) {
    console.error('streamable error', error);
    if (!res.headersSent) res.status(500).json(jsonRpcError(-32603, 'internal error'));
  }
});

// --- Legacy HTTP+SSE ---------------------------------------------------------------
const legacy = {}; // session id -> transport

async function openLegacy(res) {
  const transport = new SSEServerTransport('/messages', res);
  legacy[transport.sessionId] = transport;
  res.on('close', () => {
    delete legacy[transport.sessionId];
  });
  const server = buildServer('sse', () => transport.sessionId);
  await server.connect(transport);
}

app.get('/sse', (req, res) => openLegacy(res));
// The same stream under /outside/: it still announces `/messages?sessionId=…`, a path
// outside /outside/, which a gateway whose upstream base is /outside/ cannot map.
app.get('/outside/sse', (req, res) => openLegacy(res));

app.post('/messages', async (req, res) => {
  // As in the SDK's documentation: the session is named by the query's `sessionId`.
  const sessionId = req.query.sessionId;
  const transport = legacy[sessionId];
  if (!transport) {
    res.status(400).send('No transport found for sessionId');
    return;
  }
  await transport.handlePostMessage(req, res, req.body);
});

// Every request is logged as it arrives, before Express reads it: method, the raw
// request target and the raw header lines (duplicates kept), so a test can assert on
// what the upstream RECEIVED even when Express then refuses it.
createServer((req, res) => {
  appendFileSync(execLog, JSON.stringify({
    kind: 'request', method: req.method, url: req.url, headers: req.rawHeaders,
  }) + '\n');
  app(req, res);
}).listen(port, HOST, () => {
  console.log(`adversarial-ts listening on http://${HOST}:${port}`);
});
