// The TypeScript MCP SDK's client with OAuth, driven headlessly, for drawbridge's e2e tests.
//
// Usage: node ts_client.mjs <route URL> [user]
//
// Starting from nothing but the route URL, it connects through StreamableHTTPClientTransport
// with an OAuthClientProvider whose redirectToAuthorization() follows the authorization
// server's redirects with fetch (a tiny cookie jar stands in for the browser) through the
// development sign-in of authserver/ (login_hint picks the user) up to the redirect URI,
// where it keeps the code. When the SDK answers a 401 or a 403 insufficient_scope by
// throwing UnauthorizedError, the code is handed to transport.finishAuth() and the step is
// retried, as an application with a real browser would do after its callback fired.
//
// Prints one JSON object on stdout describing what happened; exits 1 on any other error.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const REDIRECT_URI = 'http://127.0.0.1:9/callback'; // nothing listens: we stop at the redirect
const MAX_REDIRECTS = 20;
const STEP_TIMEOUT_MS = 20_000;

class HeadlessOAuthProvider {
  constructor(user) {
    this.user = user;
    this.authorizationUrls = [];
    this._tokens = undefined;
    this._client = undefined;
    this._verifier = undefined;
    this._code = undefined;
  }

  get redirectUrl() { return REDIRECT_URI; }

  get clientMetadata() {
    return {
      client_name: `drawbridge e2e ts (${this.user})`,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none', // a public client: PKCE only
    };
  }

  clientInformation() { return this._client; }
  saveClientInformation(info) { this._client = info; }
  tokens() { return this._tokens; }
  saveTokens(tokens) { this._tokens = tokens; }
  saveCodeVerifier(verifier) { this._verifier = verifier; }
  codeVerifier() { return this._verifier; }

  async redirectToAuthorization(authorizationUrl) {
    this.authorizationUrls.push(authorizationUrl.href);
    const url = new URL(authorizationUrl);
    url.searchParams.set('login_hint', this.user);
    this._code = await followToRedirectUri(url.href);
  }

  takeCode() {
    const code = this._code;
    this._code = undefined;
    if (!code) throw new Error('no authorization code was captured');
    return code;
  }
}

// GETs `start` and follows redirects by hand, carrying cookies, until one points at the
// redirect URI; returns the code from it.
async function followToRedirectUri(start) {
  const jar = new Map();
  let url = start;
  for (let i = 0; i < MAX_REDIRECTS; i += 1) {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const response = await fetch(url, {
      redirect: 'manual',
      headers: cookie ? { cookie } : {},
      signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    const location = response.headers.get('location');
    await response.body?.cancel();
    if (![302, 303, 307].includes(response.status) || !location) {
      throw new Error(`authorization stopped at ${new URL(url).pathname} with HTTP ${response.status}`);
    }
    url = new URL(location, url).href;
    if (url.startsWith(REDIRECT_URI)) {
      const params = new URL(url).searchParams;
      if (params.get('error')) {
        throw new Error(`authorization failed: ${params.get('error')}: ${params.get('error_description')}`);
      }
      return params.get('code');
    }
  }
  throw new Error(`more than ${MAX_REDIRECTS} redirects during authorization`);
}

function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
}

// Runs `step`; when the SDK says the user must authorize, completes that and runs it again.
async function withSignIn(provider, transport, step) {
  try {
    return await step();
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
    await transport.finishAuth(provider.takeCode());
    return step();
  }
}

// The same call as a plain HTTP POST with the client's token and session: the status and
// JSON-RPC error code the gateway answers, whatever the SDK makes of them.
async function rawToolCall(routeUrl, accessToken, sessionId, name) {
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    authorization: `Bearer ${accessToken}`,
  };
  if (sessionId) headers['mcp-session-id'] = sessionId;
  const response = await fetch(routeUrl, {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/call', params: { name, arguments: {} } }),
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  const text = await response.text();
  let code = null;
  try { code = JSON.parse(text)?.error?.code ?? null; } catch { code = null; }
  return {
    status: response.status,
    code,
    insufficient_scope: (response.headers.get('www-authenticate') ?? '').includes('insufficient_scope'),
  };
}

async function main() {
  const [routeUrl, user = 'alice'] = process.argv.slice(2);
  if (!routeUrl) {
    console.error('usage: node ts_client.mjs <route URL> [user]');
    process.exit(2);
  }
  const url = new URL(routeUrl);
  const provider = new HeadlessOAuthProvider(user);
  const out = { user };

  // connect = initialize; the first attempt meets the 401 and ends in a sign-in.
  let client;
  let transport;
  for (let attempt = 0; attempt < 2 && !client; attempt += 1) {
    transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
    const candidate = new Client({ name: 'drawbridge-e2e-ts', version: '1.0.0' });
    try {
      await candidate.connect(transport);
      client = candidate;
    } catch (e) {
      if (!(e instanceof UnauthorizedError)) throw e;
      await transport.finishAuth(provider.takeCode());
      await candidate.close().catch(() => {});
    }
  }
  if (!client) throw new Error('could not connect after signing in');
  out.server = client.getServerVersion()?.name;
  out.client_id = provider.clientInformation()?.client_id;
  out.tools_before = (await client.listTools()).tools.map((t) => t.name).sort();

  const echo = await withSignIn(provider, transport,
    () => client.callTool({ name: 'echo', arguments: { message: 'from typescript' } }));
  out.echo = echo.content.filter((c) => c.type === 'text').map((c) => c.text).join('');
  out.tools_after = (await client.listTools()).tools.map((t) => t.name).sort();

  try {
    await withSignIn(provider, transport, () => client.callTool({ name: 'get-env', arguments: {} }));
    out.get_env = 'allowed';
  } catch (e) {
    // Any exception lands here, a crash as well as a refusal: record what it was, and ask
    // the gateway directly below, so the test can tell a 403 from a 500.
    out.get_env = `refused: ${e.constructor.name}: ${e.message}`;
    out.get_env_error = { name: e.constructor.name, code: e.code ?? null };
  }
  out.get_env_raw = await rawToolCall(routeUrl, provider.tokens()?.access_token,
    transport.sessionId, 'get-env');

  out.authorization_scopes = provider.authorizationUrls.map(
    (u) => new URL(u).searchParams.get('scope'),
  );
  const claims = claimsOf(provider.tokens().access_token);
  out.token = { aud: claims.aud, sub: claims.sub, scope: claims.scope, client_id: claims.client_id };
  await client.close();
  console.log(JSON.stringify(out));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`ts_client: ${e.stack || e}`);
    process.exit(1);
  },
);
