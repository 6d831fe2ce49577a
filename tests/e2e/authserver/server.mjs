// A development OAuth 2.1 / OpenID authorization server for drawbridge's end-to-end tests
// and demo, built on oidc-provider (a certified OpenID Provider). See README.md beside it.
//
// What it offers, all on 127.0.0.1:$PORT with issuer http://127.0.0.1:$PORT:
//   - dynamic client registration (RFC 7591), open (no initial access token);
//   - resource indicators (RFC 8707): a token requested for a resource URI is a JWT access
//     token (RFC 9068) whose `aud` is that URI, carrying only the resource's scopes;
//   - authorization code + PKCE with a headless sign-in: /interaction/:uid signs in the
//     user named by `login_hint` (default $AUTH_DEFAULT_USER) and consents to everything
//     requested, answering with redirects only, so a plain HTTP client following
//     Location headers ends up at the client's redirect_uri with a code (even one that
//     keeps no cookies, such as mcp-authlab's `login --no-browser`: see README.md);
//   - an authorization request without `scope` gets DEFAULT_SCOPE (RFC 6749 section 3.3);
//   - client credentials, introspection (opaque tokens only, see OPAQUE_PATHS);
//   - RFC 8693 token exchange for the confidential client `drawbridge`.
//
// Environment:
//   PORT                       listen port (required); the server binds 127.0.0.1 only
//   DRAWBRIDGE_CLIENT_SECRET   secret of the pre-registered client `drawbridge` (required)
//   AUTH_USERS                 comma-separated test users (default alice,bob)
//   AUTH_DEFAULT_USER          who signs in without login_hint (default: the first user)
//   RESOURCE_SCOPES            scopes any resource may carry
//                              (default "mcp:tools tools:echo tools:read tools:admin
//                               prompts:read resources:read")
//   OPAQUE_PATHS               comma-separated URL path prefixes (e.g. /opaque/): resources
//                              under them get opaque (introspectable) access tokens, not JWTs
//   ACCESS_TOKEN_TTL           seconds (default 600)
//   DEFAULT_SCOPE              what an authorization request without `scope` asks for
//                              (default "mcp:tools", RFC 6749 section 3.3)
//   AUTH_GROUPS                users' groups, put in a `groups` claim (array) of their
//                              access tokens, e.g. "alice=sre+platform;bob=dev"
//                              (default: none, and no `groups` claim)
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const LOOPBACK = '127.0.0.1';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const EXCHANGE_TTL_MAX = 300;

function env(name, fallback) {
  const value = process.env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback === undefined) {
    console.error(`authserver: ${name} must be set`);
    process.exit(2);
  }
  return fallback;
}

const list = (text) => text.split(/[\s,]+/).filter(Boolean);

const port = Number(env('PORT'));
const issuer = `http://${LOOPBACK}:${port}`;
const drawbridgeSecret = env('DRAWBRIDGE_CLIENT_SECRET');
const users = list(env('AUTH_USERS', 'alice,bob'));
const defaultUser = env('AUTH_DEFAULT_USER', users[0]);
const resourceScopes = list(env(
  'RESOURCE_SCOPES',
  'mcp:tools tools:echo tools:read tools:admin prompts:read resources:read',
));
const opaquePaths = list(env('OPAQUE_PATHS', ''));
const accessTokenTtl = Number(env('ACCESS_TOKEN_TTL', '600'));
const defaultScope = list(env('DEFAULT_SCOPE', 'mcp:tools')).join(' ');
// "alice=sre+platform;bob=dev" -> Map { alice => [sre, platform], bob => [dev] }
const groupsOf = new Map(env('AUTH_GROUPS', '').split(';').filter(Boolean).map((entry) => {
  const [user, groups = ''] = entry.split('=');
  return [user.trim(), groups.split('+').map((g) => g.trim()).filter(Boolean)];
}));

// One RSA signing key per run: tokens die with the process, which is what tests want.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'e2e-rs256', alg: 'RS256', use: 'sig' };
const verificationKey = await jose.importJWK(
  { kty: signingJwk.kty, n: signingJwk.n, e: signingJwk.e, alg: 'RS256' },
  'RS256',
);

function log(event, fields = {}) {
  // One line per event; never tokens or secrets.
  console.log(JSON.stringify({ t: new Date().toISOString(), event, ...fields }));
}

// A resource indicator (RFC 8707) names an MCP route: any absolute http(s) URI here.
function resourceServerInfo(resource) {
  let url;
  try {
    url = new URL(resource);
  } catch {
    throw new errors.InvalidTarget('resource indicator must be an absolute URI');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new errors.InvalidTarget('resource indicator must be an http(s) URI');
  }
  const opaque = opaquePaths.some((prefix) => url.pathname.startsWith(prefix));
  return {
    scope: resourceScopes.join(' '),
    audience: resource,
    accessTokenTTL: accessTokenTtl,
    accessTokenFormat: opaque ? 'opaque' : 'jwt',
    ...(opaque ? {} : { jwt: { sign: { alg: 'RS256' } } }),
  };
}

const configuration = {
  clients: [
    {
      client_id: 'drawbridge',
      client_secret: drawbridgeSecret,
      grant_types: [TOKEN_EXCHANGE, 'client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingJwk] },
  cookies: { keys: [jose.base64url.encode(crypto.getRandomValues(new Uint8Array(32)))] },
  scopes: ['openid', 'offline_access'],
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
  findAccount: async (_ctx, id) => {
    if (!users.includes(id)) return undefined;
    return {
      accountId: id,
      claims: async () => ({ sub: id, name: id, preferred_username: id }),
    };
  },
  interactions: {
    // Absolute: a user agent that follows Location headers verbatim (mcp-authlab's
    // headless login, on urllib) cannot resolve a relative one.
    url: (_ctx, interaction) => `${issuer}/interaction/${interaction.uid}`,
  },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Only the gateway (a confidential client) may introspect.
      allowedPolicy: async (ctx) => ctx.oidc.client.clientId === 'drawbridge',
    },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Without `resource`, a token is for the userinfo endpoint only (opaque).
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => resourceServerInfo(resource),
    },
  },
  // Registration must not narrow a client's scopes: see README.md ("scope at registration").
  extraClientMetadata: {
    properties: ['x_e2e_unused'],
    validator(ctx, key, _value, metadata) {
      if (key === 'x_e2e_unused' && ctx?.oidc?.route === 'registration') {
        delete metadata.scope;
      }
    },
  },
  extraTokenClaims: async (_ctx, token) => {
    if (token.gty === TOKEN_EXCHANGE && token.extra?.act) return { act: token.extra.act };
    const groups = token.accountId && groupsOf.get(token.accountId);
    if (groups) return { groups };
    return undefined;
  },
  pkce: { required: () => true },
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTtl,
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTtl,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    RefreshToken: 3600,
  },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;

// RFC 6749 section 3.3: a client that omits `scope` gets a pre-defined default rather
// than a failure. oidc-provider would grant nothing and end the sign-in in access_denied
// ("no scope was granted"); mcp-authlab's login omits `scope` unless told one.
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/auth' && ctx.query.scope === undefined) {
    ctx.query = { ...ctx.query, scope: defaultScope };
  }
  await next();
});

// ---- RFC 8693 token exchange --------------------------------------------------------

// The subject token must be a JWT access token this server issued for an MCP route (an
// http(s) resource), unexpired. Opaque tokens it issued are looked up instead.
async function subjectOf(token) {
  if (token.split('.').length === 3) {
    let payload;
    try {
      ({ payload } = await jose.jwtVerify(token, verificationKey, {
        issuer,
        typ: 'at+jwt',
        algorithms: ['RS256'],
      }));
    } catch (e) {
      throw new errors.InvalidGrant(`subject_token invalid (${e.code || 'verification failed'})`);
    }
    const audiences = [].concat(payload.aud ?? []);
    if (!audiences.some((a) => /^https?:\/\//.test(a))) {
      throw new errors.InvalidGrant('subject_token was not issued for an MCP route');
    }
    if (!payload.sub || payload.sub === payload.client_id) {
      throw new errors.InvalidGrant('subject_token names no user (a client credentials token?)');
    }
    if (payload.gty === TOKEN_EXCHANGE) {
      throw new errors.InvalidGrant('subject_token is itself an exchanged token');
    }
    return {
      sub: payload.sub,
      clientId: payload.client_id,
      scopes: new Set(list(payload.scope || '')),
      exp: payload.exp,
    };
  }
  const stored = await provider.AccessToken.find(token);
  if (!stored || !stored.accountId) {
    throw new errors.InvalidGrant('subject_token invalid or expired');
  }
  return {
    sub: stored.accountId,
    clientId: stored.clientId,
    scopes: new Set(list(stored.scope || '')),
    exp: stored.exp,
  };
}

async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;
  if (!params.subject_token) throw new errors.InvalidRequest('missing subject_token');
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE && params.subject_token_type !== JWT_TOKEN_TYPE) {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('unsupported requested_token_type');
  }
  if (params.actor_token) throw new errors.InvalidRequest('actor tokens are not supported');
  const targets = [...[].concat(params.audience ?? []), ...[].concat(params.resource ?? [])];
  if (targets.length === 0) {
    throw new errors.InvalidTarget('name the upstream with audience or resource');
  }

  const subject = await subjectOf(params.subject_token);
  const requested = list(params.scope || '');
  const wider = requested.filter((s) => !subject.scopes.has(s));
  if (wider.length) {
    throw new errors.InvalidScope('requested scope exceeds the subject token\'s scope', wider.join(' '));
  }
  const now = Math.floor(Date.now() / 1000);
  const ttl = Math.min(EXCHANGE_TTL_MAX, subject.exp - now);
  if (ttl <= 0) throw new errors.InvalidGrant('subject_token expired');

  const token = new provider.AccessToken({
    accountId: subject.sub,
    client,
    gty: TOKEN_EXCHANGE,
    scope: requested.join(' ') || undefined,
    extra: { act: { sub: client.clientId } },
  });
  token.resourceServer = new provider.ResourceServer(targets[0], {
    audience: targets.length === 1 ? targets[0] : targets,
    scope: requested.join(' '),
    accessTokenTTL: ttl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  });
  const value = await token.save();
  log('token_exchange', {
    client: client.clientId,
    sub: subject.sub,
    subject_client: subject.clientId,
    audience: targets,
    scope: requested.join(' '),
  });
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: token.expiration,
    ...(requested.length ? { scope: requested.join(' ') } : {}),
  };
}

provider.registerGrantType(
  TOKEN_EXCHANGE,
  tokenExchange,
  ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource',
    'scope', 'actor_token', 'actor_token_type'],
  ['audience', 'resource'],
);

// ---- headless interaction -----------------------------------------------------------

// Signs in the user named by login_hint and grants everything the client asked for.
// Every answer is a 303 back to the provider, so no browser or form is involved.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    const user = params.login_hint || defaultUser;
    if (!users.includes(user)) {
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'unknown test user',
      }, { mergeWithLastSubmission: false });
      return;
    }
    log('login', { user, client: params.client_id });
    await provider.interactionFinished(req, res, { login: { accountId: user } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  if (prompt.name === 'consent') {
    const { accountId } = details.session;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missingResourceScopes || {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    const grantId = await grant.save();
    log('consent', { user: accountId, client: params.client_id, scope: params.scope, resource: params.resource });
    await provider.interactionFinished(req, res, { consent: { grantId } }, {
      mergeWithLastSubmission: true,
    });
    return;
  }
  throw new Error(`unexpected prompt ${prompt.name}`);
}

// ---- user agents without cookies ------------------------------------------------------

// oidc-provider ties the steps of a sign-in together with cookies (`_interaction` on
// /interaction/<uid>, `_interaction_resume` on /auth/<uid>, `_session`). A user agent that
// follows redirects without keeping cookies (mcp-authlab's `login --no-browser`) would be
// stopped with SessionNotFound at the first step. For such a user agent only (a request
// that carries no Cookie header at all), the server keeps the cookies it set on each step
// and hands them back on the next one, keyed by the interaction uid in the redirect: the
// uid is the only thing such a client carries from one step to the next. Clients with a
// cookie jar (headless_oauth.py, ts_client.mjs) send their own cookies and are untouched.
// A development-server convenience: the uid becomes a bearer of the sign-in session.
const COOKIELESS_JAR_TTL_MS = 10 * 60 * 1000;
const cookielessJars = new Map(); // interaction uid -> Map(cookie name -> value)

// The interaction uid of /interaction/<uid> and /auth/<uid> (the resume endpoint).
function flowUidOf(pathname) {
  const match = /^\/(?:interaction|auth)\/([A-Za-z0-9_-]+)$/.exec(pathname);
  return match ? match[1] : undefined;
}

function withSetCookies(jar, setCookies) {
  const next = new Map(jar);
  for (const line of [].concat(setCookies ?? [])) {
    const pair = String(line).split(';', 1)[0];
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (value === '') next.delete(name); // oidc-provider clears a cookie with an empty value
    else next.set(name, value);
  }
  return next;
}

// For a request without cookies: send back the cookies remembered for its uid, and
// remember the ones its answer sets for the uid its redirect leads to.
function carryCookiesForCookielessAgent(req, res, pathname) {
  if (req.headers.cookie !== undefined) return;
  const uid = flowUidOf(pathname);
  const jar = (uid && cookielessJars.get(uid)) || new Map();
  if (jar.size) req.headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const writeHead = res.writeHead;
  res.writeHead = function writeHeadRememberingCookies(...args) {
    const location = res.getHeader('location');
    if (location) {
      const target = new URL(String(location), issuer);
      const nextUid = target.origin === issuer ? flowUidOf(target.pathname) : undefined;
      if (nextUid) {
        cookielessJars.set(nextUid, withSetCookies(jar, res.getHeader('set-cookie')));
        setTimeout(() => cookielessJars.delete(nextUid), COOKIELESS_JAR_TTL_MS).unref();
      }
    }
    return writeHead.apply(this, args);
  };
}

const providerCallback = provider.callback();
const server = http.createServer((req, res) => {
  const path = new URL(req.url, issuer).pathname;
  carryCookiesForCookielessAgent(req, res, path);
  if (req.method === 'GET' && path.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => {
      log('interaction_error', { message: e.message });
      if (!res.headersSent) {
        res.statusCode = 400;
        res.setHeader('Content-Type', 'application/json');
      }
      res.end(JSON.stringify({ error: 'interaction_failed', error_description: e.message }));
    });
    return;
  }
  providerCallback(req, res);
});

provider.on('server_error', (_ctx, e) => log('server_error', { message: e.message, stack: e.stack }));
// oidc-provider answers invalid_grant with a fixed description; the reason is error_detail.
provider.on('grant.error', (_ctx, e) => log('grant_error', {
  error: e.error, description: e.error_description, detail: e.error_detail,
}));
provider.on('registration_create.success', (_ctx, client) => log('registered', { client: client.clientId }));
provider.on('authorization.error', (_ctx, e) => log('authorization_error', {
  error: e.error, description: e.error_description, detail: e.error_detail,
}));

server.listen(port, LOOPBACK, () => log('listening', { issuer }));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
