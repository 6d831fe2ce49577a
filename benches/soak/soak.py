#!/usr/bin/env python3
"""Soak and idle-load benchmark: drawbridge's full pipeline under mixed traffic for minutes.

Two modes, everything on 127.0.0.1, one drawbridge process (release build, one worker)
with the full pipeline: RS256 JWT validation (keys from OIDC discovery), a per-tool
policy with list filtering, RFC 8693 token exchange (scopes per_operation) to the
upstream, and sealed Mcp-Session-Ids. This process also plays the authorization server
(discovery, JWKS, a token endpoint that issues a new token per call) and the upstream MCP
server (the stand-in of benches/load/idle_streams.py, taught a few more answers).

  soak   mixed traffic at a fixed rate (open loop: request i is due at start + i/RATE)
         for --minutes: new users (a new access token each, then `initialize`), sessions
         resumed with their sealed id, tokens refreshed for the same subject as they age,
         allowed and denied `tools/call` (JSON and SSE answers), `tools/list`, GET event
         streams opened, held and dropped, and requests that must be refused (no token, a
         bad signature, an expired token, another user's session). Every kind of request
         has one expected status; anything else (or no answer) is unexpected. Every 5 s
         the gateway's RSS, open descriptors, threads and CPU time go to a CSV; at the end
         a PNG of RSS and descriptors over time and a verdict on their growth after the
         warm-up (mean of the last minute against the mean of the minute after warm-up).
  idle   10,000 idle event streams, then (on a fresh gateway) 10,000 idle kept-alive
         connections (fewer streams when the descriptor limit is too low): resident
         memory per stream and per connection, the latency of new requests (each on a
         new connection) while they are held, and the peak of further rounds of opening
         and closing them (a leak would raise it round by round).

Results go to --out (CSV, PNG, a markdown report). Exit status 1 when a check fails:
an unexpected status, an upstream that saw a user token or a refused tool, streams or
connections that did not open, or growth over the limit.
"""

import argparse
import asyncio
import base64
import collections
import contextlib
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "load"))
import idle_streams as base  # noqa: E402  (the stand-in upstream, process and HTTP helpers)

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

HOST = base.HOST
ROUTE = "soak"
KID = "soak-1"
CLIENT_ID = "soak-client"
EXCHANGED_PREFIX = "xchg-"
SAMPLE_INTERVAL = 5.0
REQUEST_TIMEOUT = 10.0
POOL_IDLE_MAX = 20.0  # a pooled connection idle longer than this is closed, not reused
POOL_MAX_USES = 200  # connections are closed after this many requests (connection churn)
MAX_IN_FLIGHT = 2000
FD_RESERVE = 400  # descriptors kept for everything but the idle streams and connections
GROWTH_LIMIT = 0.05
ALLOWED_TOOLS = ("echo", "echo_stream")
ADMIN_TOOL = "admin_reset"  # policy: needs tools:admin, which no soak user has
UNLISTED_TOOL = "delete_everything"  # not in the policy: default deny
PROTOCOL = "2025-06-18"

# Kinds of request in the mix: weight (per cent of requests) and the one status expected.
MIX = {
    "initialize": (3, 200),  # a new user: a new token, initialize, a sealed session id
    "notification": (3, 202),  # notifications/initialized in a session
    "call": (36, 200),  # tools/call echo, JSON answer
    "call_sse": (15, 200),  # tools/call echo_stream, the upstream answers an event stream
    "list": (12, 200),  # tools/list, filtered: the refused tools never appear
    "call_denied": (8, 403),  # a tool the policy does not list
    "call_no_scope": (4, 403),  # a listed tool whose scope the user lacks
    "stream": (5, 200),  # GET event stream: opened, first event read, held 2-8 s, dropped
    "no_token": (4, 401),
    "bad_signature": (3, 401),  # a fresh token whose signature does not verify
    "expired": (4, 401),  # a fresh, correctly signed token past exp (and leeway)
    "foreign_session": (3, 404),  # a user's token with another user's sealed session
}


class SoakError(base.BenchError):
    pass


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_bytes(i: int) -> bytes:
    return i.to_bytes((i.bit_length() + 7) // 8, "big")


# ---------------------------------------------------------------- authorization server


class Issuer:
    """The authorization server: OIDC discovery, a JWKS, a token endpoint; and the
    minting of user access tokens with its key."""

    def __init__(self, exchanged_life: int) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.url = ""
        self.exchanged_life = exchanged_life
        self.token_calls = 0
        self.bad_token_calls = 0
        self.minted = 0
        self.server = base.Upstream()
        self.server.serve_one = self.serve_one  # the stand-in's HTTP loop, these answers

    async def start(self) -> None:
        port = await self.server.start(0)
        self.url = f"http://{HOST}:{port}"
        n = self.key.public_key().public_numbers()
        jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
               "n": b64u(int_bytes(n.n)), "e": b64u(int_bytes(n.e))}
        self.jwks = json.dumps({"keys": [jwk]}).encode()
        self.discovery = json.dumps({
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }).encode()

    async def stop(self) -> None:
        await self.server.stop()

    def mint(self, sub: str, audience: str, life: int, scope: str = "mcp:tools tools:echo",
             bad_signature: bool = False) -> str:
        """An RS256 access token; life < 0 makes one that expired -life seconds ago."""
        now = int(time.time())
        header = {"alg": "RS256", "kid": KID, "typ": "at+jwt"}
        claims = {"iss": self.url, "sub": sub, "aud": audience, "exp": now + life,
                  "iat": min(now, now + life - 60), "jti": os.urandom(9).hex(),
                  "scope": scope, "client_id": CLIENT_ID}
        signing_input = (b64u(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + b64u(json.dumps(claims, separators=(",", ":")).encode()))
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        if bad_signature:
            sig = bytes([sig[0] ^ 0x01]) + sig[1:]
        self.minted += 1
        return signing_input + "." + b64u(sig)

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        request_line, headers = base.parse_head(await reader.readuntil(b"\r\n\r\n"))
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0]
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method == "GET" and path == "/.well-known/openid-configuration":
            writer.write(base.http_response("200 OK", "application/json", self.discovery))
        elif method == "GET" and path == "/jwks":
            writer.write(base.http_response("200 OK", "application/json", self.jwks))
        elif method == "POST" and path == "/token":
            form = urllib.parse.parse_qs(body.decode())
            self.token_calls += 1
            if (form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:token-exchange"]
                    or not form.get("subject_token")):
                self.bad_token_calls += 1
            answer = {"access_token": EXCHANGED_PREFIX + os.urandom(12).hex(),
                      "token_type": "Bearer", "expires_in": self.exchanged_life,
                      "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}
            writer.write(base.http_response("200 OK", "application/json",
                                            json.dumps(answer).encode()))
        else:
            writer.write(base.http_response("404 Not Found", "text/plain", b"not found\n"))
        await writer.drain()
        return True


# ---------------------------------------------------------------- upstream MCP server


def tool(name: str) -> dict:
    return {"name": name, "description": name, "inputSchema": {"type": "object"}}


class McpUpstream(base.Upstream):
    """The stand-in upstream of idle_streams.py (GET: an endless event stream), answering
    POSTs as an MCP server would, and recording what reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions = itertools.count(1)
        self.received = collections.Counter()  # method or tools/call:<name>
        self.user_tokens_seen = 0  # requests whose Authorization was not an exchanged token
        self.refused_tools_seen = 0  # tools/call of a tool the policy refuses

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        request_line, headers = base.parse_head(await reader.readuntil(b"\r\n\r\n"))
        method, _, rest = request_line.partition(" ")
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if not headers.get("authorization", "").startswith("Bearer " + EXCHANGED_PREFIX):
            self.user_tokens_seen += 1
        if method == "GET":
            self.received["GET"] += 1
            await self.stream(reader, writer)
            return False
        if method != "POST":
            self.received[method] += 1
            writer.write(base.http_response("405 Method Not Allowed", "text/plain", b"no\n"))
            await writer.drain()
            return True
        msg = json.loads(body)
        rpc = msg.get("method", "")
        name = msg.get("params", {}).get("name", "") if rpc == "tools/call" else ""
        self.received[f"{rpc}:{name}" if name else rpc] += 1
        session = headers.get("mcp-session-id")
        extra = ""
        if rpc == "initialize":
            extra = f"Mcp-Session-Id: up-{next(self.sessions)}\r\n"
        elif session:
            extra = f"Mcp-Session-Id: {session}\r\n"
        if "id" not in msg:  # a notification
            writer.write(f"HTTP/1.1 202 Accepted\r\n{extra}Content-Length: 0\r\n\r\n".encode())
            await writer.drain()
            return True
        if rpc == "initialize":
            result = {"protocolVersion": PROTOCOL, "capabilities": {"tools": {}},
                      "serverInfo": {"name": "soak-upstream", "version": "1"}}
        elif rpc == "tools/list":
            result = {"tools": [tool(n) for n in (*ALLOWED_TOOLS, ADMIN_TOOL, UNLISTED_TOOL)]}
        elif rpc == "tools/call":
            if name not in ALLOWED_TOOLS:
                self.refused_tools_seen += 1
            text = msg.get("params", {}).get("arguments", {}).get("message", "")
            result = {"content": [{"type": "text", "text": text}]}
        else:
            result = {}
        answer = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
        if name == "echo_stream":  # an SSE answer: a progress notification, then the result
            progress = json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                                   "params": {"level": "info", "data": "working"}}).encode()
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{extra}"
                "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                + base.chunk(b"event: message\ndata: " + progress + b"\n\n")
                + base.chunk(b"event: message\ndata: " + answer + b"\n\n") + b"0\r\n\r\n"
            )
        else:
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(answer)}\r\n\r\n".encode() + answer
            )
        await writer.drain()
        return True


# ---------------------------------------------------------------- gateway


def write_config(path: Path, port: int, admin_port: int, upstream_port: int, issuer: str,
                 session_key: str, limits: str = "") -> None:
    path.write_text(f"""listen: {HOST}:{port}
admin:
  listen: {HOST}:{admin_port}
workers: 1
{limits}sessions:
  keys:
    - id: soak
      secret: '{session_key}'
issuers:
  - name: soak
    issuer: {issuer}
routes:
  - name: {ROUTE}
    match: {{ path: /mcp }}
    public_url: http://{HOST}:{port}/mcp
    upstream:
      url: http://{HOST}:{upstream_port}/mcp
    auth:
      issuers: [soak]
      required_scopes: [mcp:tools]
    policy:
      tools:
        echo: [tools:echo]
        echo_stream: [tools:echo]
        {ADMIN_TOOL}: [tools:admin]
    upstream_auth:
      token_exchange:
        issuer: soak
        client_id: drawbridge
        client_secret: soak-secret
        audience: upstream
        scopes: per_operation
        base_scopes: [mcp:tools]
""")


@dataclass
class Gateway:
    proc: object
    port: int
    admin_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/mcp"


async def start_gateway(args, tmp: Path, name: str, issuer: Issuer, upstream_port: int,
                        limits: str = "") -> Gateway:
    port, admin_port = base.free_port(), base.free_port()
    config, log = tmp / f"{name}.yaml", tmp / f"{name}.log"
    keygen = subprocess.run([args.drawbridge, "keygen"], capture_output=True, text=True, timeout=30)
    session_key = keygen.stdout.strip()
    if keygen.returncode != 0 or not session_key:
        raise SoakError(f"drawbridge keygen failed: {keygen.stderr.strip()}")
    write_config(config, port, admin_port, upstream_port, issuer.url, session_key, limits)
    base.validate_config(args.drawbridge, config)
    proc = base.start_drawbridge(args.drawbridge, config, log)
    gw = Gateway(proc, port, admin_port, log)
    await base.wait_ready(proc, port, admin_port)
    return gw


def proc_sample(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(stat[11]) + int(stat[12])
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
        "cpu_s": ticks / os.sysconf("SC_CLK_TCK"),
    }


async def metrics(gw: Gateway) -> dict[str, float]:
    """The admin /metrics as {'name{labels}': value}."""
    _, text = await asyncio.to_thread(base.http_get, f"http://{HOST}:{gw.admin_port}/metrics")
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def metric_sum(m: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for key, value in m.items():
        metric, _, rest = key.partition("{")
        if metric == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


# ---------------------------------------------------------------- HTTP client


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes


class Conn:
    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer
        self.uses = 0
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class Client:
    """Keep-alive HTTP/1.1 to the gateway: a FIFO pool (every pooled connection keeps
    being used), each connection closed after POOL_MAX_USES requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: collections.deque[Conn] = collections.deque()
        self.opened = 0

    async def connect(self) -> Conn:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        self.opened += 1
        return Conn(reader, writer)

    async def take(self) -> Conn:
        while self.idle:
            conn = self.idle.popleft()
            if time.monotonic() - conn.idle_since < POOL_IDLE_MAX:
                return conn
            conn.close()
        return await self.connect()

    async def request(self, method: str, headers: dict, body: bytes = b"",
                      conn: Conn | None = None, keep: bool = True) -> Response:
        conn = conn or await self.take()
        ok = False
        try:
            head = f"{method} /mcp HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            for k, v in headers.items():
                head += f"{k}: {v}\r\n"
            if body:
                head += f"Content-Length: {len(body)}\r\n"
            conn.writer.write(head.encode() + b"\r\n" + body)
            status_line, rheaders = base.parse_head(await conn.reader.readuntil(b"\r\n\r\n"))
            status = int(status_line.split()[1])
            if status in (204, 304) or 100 <= status < 200:
                rbody = b""
            elif "content-length" in rheaders or "chunked" in rheaders.get("transfer-encoding", ""):
                rbody = await base.read_body(conn.reader, rheaders)
            else:  # delimited by the end of the connection
                rbody = await conn.reader.read()
                keep = False
            ok = True
        finally:
            conn.uses += 1
            if (ok and keep and rheaders.get("connection", "").lower() != "close"
                    and conn.uses < POOL_MAX_USES):
                conn.idle_since = time.monotonic()
                self.idle.append(conn)
            else:
                conn.close()
        return Response(status, rheaders, rbody)

    def close(self) -> None:
        while self.idle:
            self.idle.popleft().close()


def rpc(method: str, params: dict | None = None, id_: int | None = 1) -> bytes:
    msg = {"jsonrpc": "2.0", "method": method}
    if id_ is not None:
        msg["id"] = id_
    if params is not None:
        msg["params"] = params
    return json.dumps(msg, separators=(",", ":")).encode()


POST_HEADERS = {"Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": PROTOCOL}


# ---------------------------------------------------------------- soak


@dataclass
class User:
    sub: str
    token: str
    minted: float
    session: str = ""


@dataclass
class Soak:
    args: argparse.Namespace
    issuer: Issuer
    gw: Gateway
    client: Client
    users: collections.deque = field(default_factory=collections.deque)
    statuses: collections.Counter = field(default_factory=collections.Counter)  # (kind, status)
    problems: collections.Counter = field(default_factory=collections.Counter)  # (kind, what)
    latencies: dict = field(default_factory=lambda: collections.defaultdict(list))
    in_flight: int = 0
    done: int = 0
    user_seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    refreshed: int = 0
    streams_open: int = 0

    @property
    def audience(self) -> str:
        return self.gw.url

    def auth(self, user: User) -> dict:
        if time.time() - user.minted > self.args.refresh_after:  # the client refreshes
            user.token = self.issuer.mint(user.sub, self.audience, self.args.token_life)
            user.minted = time.time()
            self.refreshed += 1
        h = {"Authorization": f"Bearer {user.token}"}
        if user.session:
            h["Mcp-Session-Id"] = user.session
        return h

    def note_session(self, user: User, r: Response) -> None:
        sealed = r.headers.get("mcp-session-id")
        if sealed:
            user.session = sealed

    def pick_user(self) -> User | None:
        return random.choice(self.users) if self.users else None

    async def new_user(self) -> tuple[int, str]:
        user = User(f"user-{next(self.user_seq)}", "", time.time())
        user.token = self.issuer.mint(user.sub, self.audience, self.args.token_life)
        r = await self.client.request("POST", {**POST_HEADERS, **self.auth(user)}, rpc(
            "initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                           "clientInfo": {"name": "soak", "version": "1"}}))
        sealed = r.headers.get("mcp-session-id", "")
        if r.status == 200:
            if not sealed.startswith("v1."):
                return r.status, "no sealed session id"
            user.session = sealed
            self.users.append(user)
            while len(self.users) > self.args.users:
                self.users.popleft()
        return r.status, ""

    async def one(self, kind: str) -> tuple[int, str]:
        """Sends one request of `kind`; returns its status and a problem with the answer
        ('' when none)."""
        user = self.pick_user()
        if kind == "initialize" or user is None:
            return await self.new_user()
        if kind == "notification":
            r = await self.client.request("POST", {**POST_HEADERS, **self.auth(user)},
                                          rpc("notifications/initialized", id_=None))
            return r.status, ""
        if kind in ("call", "call_sse", "call_denied", "call_no_scope"):
            name = {"call": "echo", "call_sse": "echo_stream", "call_denied": UNLISTED_TOOL,
                    "call_no_scope": ADMIN_TOOL}[kind]
            message = os.urandom(6).hex()
            r = await self.client.request("POST", {**POST_HEADERS, **self.auth(user)}, rpc(
                "tools/call", {"name": name, "arguments": {"message": message}}, 7))
            self.note_session(user, r)
            if r.status == 200:
                ctype = r.headers.get("content-type", "")
                if kind == "call_sse" and not ctype.startswith("text/event-stream"):
                    return r.status, "not an event stream"
                if message.encode() not in r.body:
                    return r.status, "answer without the echoed text"
            return r.status, ""
        if kind == "list":
            r = await self.client.request("POST", {**POST_HEADERS, **self.auth(user)},
                                          rpc("tools/list", {}, 3))
            self.note_session(user, r)
            if r.status == 200:
                if ADMIN_TOOL.encode() in r.body or UNLISTED_TOOL.encode() in r.body:
                    return r.status, "a refused tool was listed"
                if not all(t.encode() in r.body for t in ALLOWED_TOOLS):
                    return r.status, "an allowed tool is missing"
            return r.status, ""
        if kind == "stream":
            return await self.stream(user)
        if kind == "no_token":
            r = await self.client.request("POST", POST_HEADERS, rpc("tools/list", {}, 4))
            return r.status, ""
        if kind in ("bad_signature", "expired"):
            token = self.issuer.mint(user.sub, self.audience,
                                     -300 if kind == "expired" else self.args.token_life,
                                     bad_signature=kind == "bad_signature")
            r = await self.client.request("POST", {**POST_HEADERS, "Authorization": f"Bearer {token}",
                                                   "Mcp-Session-Id": user.session},
                                          rpc("tools/call", {"name": "echo", "arguments": {}}, 5))
            return r.status, ""
        if kind == "foreign_session":
            other = self.pick_user()
            while other is None or other.sub == user.sub:
                other = self.pick_user()
            h = self.auth(user)
            h["Mcp-Session-Id"] = other.session
            r = await self.client.request("POST", {**POST_HEADERS, **h},
                                          rpc("tools/list", {}, 6))
            return r.status, ""
        raise SoakError(f"unknown kind {kind}")

    async def stream(self, user: User) -> tuple[int, str]:
        conn = await self.client.connect()
        try:
            head = (f"GET /mcp HTTP/1.1\r\nHost: {HOST}:{self.gw.port}\r\n"
                    "Accept: text/event-stream\r\n"
                    f"MCP-Protocol-Version: {PROTOCOL}\r\n")
            for k, v in self.auth(user).items():
                head += f"{k}: {v}\r\n"
            conn.writer.write(head.encode() + b"\r\n")
            status_line, headers = base.parse_head(await conn.reader.readuntil(b"\r\n\r\n"))
            status = int(status_line.split()[1])
            if status != 200:
                return status, ""
            await base.read_first_event(conn.reader, "chunked" in headers.get("transfer-encoding", ""))
            self.streams_open += 1
            try:
                await asyncio.sleep(random.uniform(2, 8))  # held, then dropped by the client
            finally:
                self.streams_open -= 1
            return status, ""
        finally:
            conn.close()

    async def timed(self, kind: str) -> None:
        if len(self.users) < 2:  # every other kind needs a session (two: foreign_session)
            kind = "initialize"
        self.in_flight += 1
        started = time.monotonic()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT + (10 if kind == "stream" else 0)):
                status, problem = await self.one(kind)
            self.statuses[(kind, status)] += 1
            if problem:
                self.problems[(kind, problem)] += 1
            if kind != "stream":
                self.latencies[kind].append(time.monotonic() - started)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError,
                asyncio.LimitOverrunError, base.BenchError) as e:
            self.statuses[(kind, f"error: {base.describe(e)[:60]}")] += 1
        finally:
            self.in_flight -= 1
            self.done += 1


async def sampler(gw: Gateway, soak: Soak | None, rows: list, stop: asyncio.Event,
                  started: float) -> None:
    while True:
        row = {"t_s": round(time.monotonic() - started, 1), **proc_sample(gw.proc.pid)}
        with contextlib.suppress(OSError):
            m = await metrics(gw)
            row["client_connections"] = int(metric_sum(m, "drawbridge_client_connections"))
            row["active_streams"] = int(metric_sum(m, "drawbridge_active_streams"))
            row["fds_other"] = row["fds"] - row["client_connections"] - row["active_streams"]
        if soak is not None:
            row["requests_done"] = soak.done
            row["in_flight"] = soak.in_flight
            row["unexpected"] = unexpected_count(soak)
        rows.append(row)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL)
        if stop.is_set():
            return


def unexpected_count(soak: Soak) -> int:
    bad = sum(n for (kind, status), n in soak.statuses.items() if status != MIX[kind][1])
    return bad + sum(soak.problems.values())


async def run_soak(args, tmp: Path, issuer: Issuer, upstream: McpUpstream) -> dict:
    gw = await start_gateway(args, tmp, "soak", issuer, upstream.port)
    client = Client(gw.port)
    soak = Soak(args, issuer, gw, client)
    rows: list[dict] = []
    stop = asyncio.Event()
    tasks: set[asyncio.Task] = set()
    kinds = list(MIX)
    weights = [MIX[k][0] for k in kinds]
    rng = random.Random(args.seed)
    random.seed(args.seed + 1)
    try:
        started = time.monotonic()
        sampling = asyncio.create_task(sampler(gw, soak, rows, stop, started))
        total = int(args.minutes * 60 * args.rate)
        late_max = 0.0
        skipped = 0
        for i in range(total):
            due = started + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late_max = max(late_max, -delay)
            if soak.in_flight >= MAX_IN_FLIGHT:
                skipped += 1
                continue
            task = asyncio.create_task(soak.timed(rng.choices(kinds, weights)[0]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elapsed = time.monotonic() - started  # the last request was sent
        if tasks:
            await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 20)
        client.close()
        await asyncio.sleep(3)  # closed connections and streams settle
        stop.set()
        await sampling
        rows.append({"t_s": round(time.monotonic() - started, 1), **proc_sample(gw.proc.pid)})
        final = await metrics(gw)
        rows[-1]["client_connections"] = int(metric_sum(final, "drawbridge_client_connections"))
        rows[-1]["active_streams"] = int(metric_sum(final, "drawbridge_active_streams"))
        rows[-1]["fds_other"] = rows[-1]["fds"] - rows[-1]["client_connections"] - rows[-1]["active_streams"]
        if gw.proc.poll() is not None:
            raise SoakError(f"drawbridge exited with status {gw.proc.returncode}")
        return {"gw": gw, "soak": soak, "rows": rows, "elapsed": elapsed, "late_max": late_max,
                "skipped": skipped, "metrics": final, "total": total}
    finally:
        for task in tasks:
            task.cancel()
        client.close()
        await base.stop_drawbridge(gw.proc)
        args.log_lines = base.log_lines(gw.log)


def window_mean(rows: list[dict], key: str, lo: float, hi: float) -> float | None:
    values = [r[key] for r in rows if lo <= r["t_s"] < hi and key in r]
    return statistics.fmean(values) if values else None


def soak_report(args, r: dict, issuer: Issuer, upstream: McpUpstream) -> tuple[list[str], list[str]]:
    """The markdown report's lines and the failed checks."""
    soak, rows, m = r["soak"], r["rows"], r["metrics"]
    # Samples while requests were being sent (the sampler goes on while the last ones
    # finish, and the last row is taken after every connection closed).
    run_rows = [x for x in rows[:-1] if x["t_s"] <= r["elapsed"] + 0.5] or rows[:1]
    end_t = run_rows[-1]["t_s"] if run_rows else 0.0
    warm = args.warmup
    out, failed = [], []
    out.append(f"# Soak: {args.minutes:g} min at {args.rate:g} requests/s\n")
    out.append(f"- date: {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}; "
               f"drawbridge `{args.drawbridge}`; `workers: 1`, RUST_LOG=warn")
    out.append(f"- scheduled {r['total']} requests in {r['elapsed']:.0f} s; sent {r['total'] - r['skipped']}; "
               f"largest lateness of the scheduler {r['late_max'] * 1000:.0f} ms")
    out.append(f"- users: {next(soak.user_seq) - 1} created, pool of {args.users}; tokens minted "
               f"{issuer.minted} (of which {soak.refreshed} refreshes of a live session); "
               f"token endpoint calls {issuer.token_calls}")
    out.append(f"- token life {args.token_life} s, refreshed after {args.refresh_after} s; "
               f"exchanged tokens live {args.exchanged_life} s\n")
    out.append("| kind | expected | answers | unexpected | p50 ms | p99 ms |")
    out.append("|---|---:|---|---:|---:|---:|")
    for kind, (_, expected) in MIX.items():
        got = {s: n for (k, s), n in soak.statuses.items() if k == kind}
        bad = sum(n for s, n in got.items() if s != expected)
        bad += sum(n for (k, _), n in soak.problems.items() if k == kind)
        lat = sorted(soak.latencies.get(kind, []))
        p50 = f"{lat[len(lat) // 2] * 1000:.1f}" if lat else "-"
        p99 = f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000:.1f}" if lat else "-"
        answers = ", ".join(f"{s}: {n}" for s, n in sorted(got.items(), key=str))
        out.append(f"| {kind} | {expected} | {answers} | {bad} | {p50} | {p99} |")
    unexpected = unexpected_count(soak)
    total_answers = sum(soak.statuses.values())
    out.append(f"\n**Unexpected: {unexpected}** of {total_answers} requests.")
    for (kind, problem), n in soak.problems.items():
        out.append(f"- {kind}: {n} x {problem}")
    if unexpected:
        failed.append(f"{unexpected} unexpected answers")

    out.append("\nThe upstream received: " + ", ".join(
        f"{k} {n}" for k, n in sorted(upstream.received.items())))
    out.append(f"- requests without an exchanged token: {upstream.user_tokens_seen}; "
               f"calls of a refused tool: {upstream.refused_tools_seen}; "
               f"token-endpoint calls that were not a token exchange: {issuer.bad_token_calls}")
    if upstream.user_tokens_seen or upstream.refused_tools_seen or issuer.bad_token_calls:
        failed.append("the upstream saw a user token or a refused tool call")

    out.append("\nGateway counters at the end: " + "; ".join([
        f"token cache hit {metric_sum(m, 'drawbridge_cache_requests_total', cache='token', result='hit'):.0f} "
        f"/ miss {metric_sum(m, 'drawbridge_cache_requests_total', cache='token', result='miss'):.0f}",
        f"exchange cache hit {metric_sum(m, 'drawbridge_cache_requests_total', cache='exchange', result='hit'):.0f} "
        f"/ miss {metric_sum(m, 'drawbridge_cache_requests_total', cache='exchange', result='miss'):.0f}",
        f"token exchanges {metric_sum(m, 'drawbridge_token_exchange_total', result='success'):.0f}",
        f"session rejections {metric_sum(m, 'drawbridge_session_rejections_total'):.0f}",
        f"auth failures {metric_sum(m, 'drawbridge_auth_failures_total'):.0f}",
        f"upstream errors {metric_sum(m, 'drawbridge_upstream_errors_total'):.0f}",
        f"client timeouts {metric_sum(m, 'drawbridge_client_timeouts_total'):.0f}",
    ]))

    out.append("\n| sample | t (s) | RSS (KiB) | fds | threads | client conns | streams |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")

    def line(label: str, row: dict) -> None:
        out.append(f"| {label} | {row['t_s']:.0f} | {row['rss_kib']} | {row['fds']} | "
                   f"{row['threads']} | {row.get('client_connections', '-')} | "
                   f"{row.get('active_streams', '-')} |")

    line("first", rows[0])
    after_warm = next((x for x in run_rows if x["t_s"] >= warm), run_rows[-1])
    line("after warm-up", after_warm)
    line("last under load", run_rows[-1])
    line("after the traffic stopped", rows[-1])
    if end_t - warm >= 2 * 60:
        # Raw descriptors follow the streams and connections held at the moment of the
        # sample; fds_other (descriptors minus open client connections and streams: the
        # listeners, the upstream and token-endpoint pools, the runtime) is what a leak
        # would move.
        for key in ("rss_kib", "fds", "fds_other"):
            a = window_mean(run_rows, key, warm, warm + 60)
            b = window_mean(run_rows, key, end_t - 60 + 0.1, end_t + 0.1)
            growth = (b - a) / a
            peak = max(x[key] for x in run_rows if x["t_s"] >= warm)
            verdict = ("not judged: follows the load" if key == "fds"
                       else "PASS" if growth <= GROWTH_LIMIT else "FAIL")
            out.append(f"\n**{key}**: mean {a:.0f} in the minute after warm-up, {b:.0f} in the last "
                       f"minute: growth {growth * 100:+.1f}% (limit {GROWTH_LIMIT * 100:.0f}%): "
                       f"{verdict}; largest after warm-up {peak}")
            if growth > GROWTH_LIMIT and key != "fds":
                failed.append(f"{key} grew {growth * 100:.1f}% after warm-up")
    else:
        out.append(f"\n(growth verdict needs at least {warm / 60 + 2:g} minutes)")
    cpu = run_rows[-1]["cpu_s"] - rows[0]["cpu_s"]
    out.append(f"\nGateway CPU: {cpu:.1f} s over {end_t:.0f} s "
               f"({cpu / max(end_t, 1) * 100:.1f}% of a core); "
               f"{cpu / max(total_answers, 1) * 1e6:.0f} µs per request")
    if rows[-1].get("active_streams"):
        failed.append(f"drawbridge_active_streams {rows[-1]['active_streams']} after every stream closed")
    if rows[-1].get("client_connections"):
        failed.append(f"drawbridge_client_connections {rows[-1]['client_connections']} after every connection closed")
    return out, failed


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w") as f:
        f.write(",".join(keys) + "\n")
        for row in rows:
            f.write(",".join(str(row.get(k, "")) for k in keys) + "\n")


def plot(path: Path, rows: list[dict], title: str, warmup: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.plot(t, [r["rss_kib"] / 1024 for r in rows], color="tab:blue")
    ax1.set_ylabel("RSS (MiB)")
    ax1.set_ylim(bottom=0)
    ax2.plot(t, [r["fds"] for r in rows], color="tab:orange", label="open fds")
    ax2.plot(t, [r.get("fds_other", 0) for r in rows], color="tab:purple",
             label="fds minus connections and streams")
    ax2.plot(t, [r.get("client_connections", 0) for r in rows], color="tab:green",
             label="client connections", linewidth=0.8)
    ax2.plot(t, [r.get("active_streams", 0) for r in rows], color="tab:red",
             label="event streams", linewidth=0.8)
    ax2.set_ylabel("count")
    ax2.set_ylim(bottom=0)
    ax2.legend(loc="upper left", fontsize=8)
    ax2.set_xlabel("minutes")
    for ax in (ax1, ax2):
        ax.axvline(warmup / 60, color="grey", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- idle


async def probe_latency(port: int, headers: dict, count: int) -> list[float]:
    """`count` tools/call requests, one after another, each on a new connection
    (connect included); seconds each."""
    client = Client(port)
    out = []
    for i in range(count):
        started = time.monotonic()
        r = await client.request("POST", {**POST_HEADERS, **headers}, rpc(
            "tools/call", {"name": "echo", "arguments": {"message": f"probe{i}"}}, 9), keep=False)
        if r.status != 200:
            raise SoakError(f"probe request answered {r.status}: {r.body[:200]!r}")
        out.append(time.monotonic() - started)
        await asyncio.sleep(0.02)
    return out


def lat_summary(values: list[float]) -> str:
    v = sorted(values)
    return (f"median {statistics.median(v) * 1000:.2f} ms, p90 {v[int(len(v) * 0.9)] * 1000:.2f} ms, "
            f"max {v[-1] * 1000:.2f} ms (n={len(v)})")


async def idle_users(issuer: Issuer, gw: Gateway, n: int) -> list[User]:
    client = Client(gw.port)
    users = []
    for i in range(n):
        user = User(f"idle-{i}", issuer.mint(f"idle-{i}", gw.url, 3600), time.time())
        r = await client.request("POST", {**POST_HEADERS, "Authorization": f"Bearer {user.token}"},
                                 rpc("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                                    "clientInfo": {"name": "idle", "version": "1"}}))
        if r.status != 200:
            raise SoakError(f"initialize answered {r.status}")
        user.session = r.headers.get("mcp-session-id", "")
        users.append(user)
    client.close()
    return users


async def open_idle(port: int, n: int, make) -> tuple[list, collections.Counter, float]:
    """n connections made by `make()` (each returns a writer to hold), 100 at a time."""
    gate = asyncio.Semaphore(100)
    held, failures = [], collections.Counter()

    async def one(i: int):
        async with gate:
            async with asyncio.timeout(30):
                return await make(i)

    started = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    for res in results:
        if isinstance(res, BaseException):
            failures[base.describe(res)[:80]] += 1
        else:
            held.append(res)
    return held, failures, time.monotonic() - started


async def run_idle(args, tmp: Path, issuer: Issuer, upstream: McpUpstream) -> tuple[list[str], list[str]]:
    # Every stream costs the gateway two descriptors (client and upstream connection) and
    # this process two (both ends); a connection one each. Without CAP_SYS_RESOURCE the
    # hard limit cannot be raised, so fewer streams are opened when it is too low.
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    counts = {"streams": min(args.idle, (fd_limit - FD_RESERVE) // 2),
              "connections": min(args.idle, fd_limit - FD_RESERVE)}
    limits = f"limits:\n  max_connections: {args.idle + 1000}\n  client_idle_timeout: 30m\n"
    out = [f"# Idle load: {counts['streams']} event streams, then {counts['connections']} "
           "kept-alive connections\n"]
    failed = []
    for phase in ("streams", "connections"):
        n = counts[phase]
        if n < args.idle:
            out.append(f"(descriptor limit {fd_limit}: {n} {phase} instead of {args.idle})\n")
        gw = await start_gateway(args, tmp, f"idle-{phase}", issuer, upstream.port, limits)
        held = []
        try:
            users = await idle_users(issuer, gw, 100)
            probe_headers = {"Authorization": f"Bearer {users[0].token}",
                             "Mcp-Session-Id": users[0].session}
            # Warm-up: every user's token verified and exchanged for both scope sets,
            # a few streams opened and closed, the probe's path warm.
            warm_client = Client(gw.port)
            for u in users:
                for name in ("echo",):
                    await warm_client.request("POST", {**POST_HEADERS, "Authorization": f"Bearer {u.token}",
                                                       "Mcp-Session-Id": u.session},
                                              rpc("tools/call", {"name": name, "arguments": {}}, 2))
            warm_client.close()
            await probe_latency(gw.port, probe_headers, 20)
            await asyncio.sleep(2)
            rss_base = base.rss_kib(gw.proc.pid)
            fds_base = len(os.listdir(f"/proc/{gw.proc.pid}/fd"))
            lat_base = await probe_latency(gw.port, probe_headers, args.probes)

            if phase == "streams":
                async def make(i: int):
                    u = users[i % len(users)]
                    reader, writer = await asyncio.open_connection(HOST, gw.port)
                    try:
                        writer.write((f"GET /mcp HTTP/1.1\r\nHost: {HOST}:{gw.port}\r\n"
                                      f"Accept: text/event-stream\r\nMCP-Protocol-Version: {PROTOCOL}\r\n"
                                      f"Authorization: Bearer {u.token}\r\nMcp-Session-Id: {u.session}\r\n\r\n").encode())
                        status_line, headers = base.parse_head(await reader.readuntil(b"\r\n\r\n"))
                        if status_line.split()[1] != "200":
                            raise SoakError(f"status {status_line}")
                        await base.read_first_event(reader, "chunked" in headers.get("transfer-encoding", ""))
                        return writer
                    except BaseException:
                        writer.close()
                        raise
            else:
                async def make(i: int):
                    u = users[i % len(users)]
                    c = Client(gw.port)
                    conn = await c.connect()
                    r = await c.request("POST", {**POST_HEADERS, "Authorization": f"Bearer {u.token}",
                                                 "Mcp-Session-Id": u.session},
                                        rpc("tools/call", {"name": "echo", "arguments": {"message": "x"}}, 3),
                                        conn=conn)
                    if r.status != 200 or not c.idle:
                        conn.close()
                        raise SoakError(f"status {r.status} (or not kept alive)")
                    return conn.writer

            held, failures, took = await open_idle(gw.port, n, make)
            await asyncio.sleep(args.keep_open)
            rss_loaded = base.rss_kib(gw.proc.pid)
            fds_loaded = len(os.listdir(f"/proc/{gw.proc.pid}/fd"))
            m = await metrics(gw)
            gauge = metric_sum(m, "drawbridge_active_streams" if phase == "streams"
                               else "drawbridge_client_connections")
            lat_loaded = await probe_latency(gw.port, probe_headers, args.probes)
            upstream_open = upstream.open_streams
            for w in held:
                w.close()
            held = []
            await asyncio.sleep(3)
            rss_closed = base.rss_kib(gw.proc.pid)
            fds_closed = len(os.listdir(f"/proc/{gw.proc.pid}/fd"))
            m = await metrics(gw)
            gauge_closed = metric_sum(m, "drawbridge_active_streams" if phase == "streams"
                                      else "drawbridge_client_connections")
            opened = n - sum(failures.values())
            per = (rss_loaded - rss_base) / opened if opened else 0.0
            # Opened and closed again: memory the first round freed is reused (flat) or
            # not (a leak: growth per round).
            rounds = [(rss_loaded, rss_closed)]
            for _ in range(args.cycles - 1):
                held, again, _ = await open_idle(gw.port, n, make)
                failures.update(again)
                await asyncio.sleep(args.keep_open)
                loaded = base.rss_kib(gw.proc.pid)
                for w in held:
                    w.close()
                held = []
                await asyncio.sleep(3)
                rounds.append((loaded, base.rss_kib(gw.proc.pid)))
            await asyncio.sleep(args.settle)
            rss_settled = base.rss_kib(gw.proc.pid)
            out.append(f"## {n} idle {phase}\n")
            out.append(f"- opened {opened}/{n} in {took:.1f} s" + "".join(
                f"; not opened: {c} x {why}" for why, c in failures.items()))
            out.append(f"- RSS {rss_base} KiB before, {rss_loaded} KiB with them "
                       f"({(rss_loaded - rss_base) / 1024:.1f} MiB added: **{per:.1f} KiB per "
                       f"{phase[:-1]}**), {rss_closed} KiB {3} s after they closed")
            out.append(f"- open fds {fds_base} before, {fds_loaded} with them, {fds_closed} after")
            out.append(f"- RSS (KiB) with them / 3 s after closing, round by round: "
                       + ", ".join(f"{a} / {b}" for a, b in rounds)
                       + f"; {rss_settled} {args.settle:g} s after the last round")
            gname = "drawbridge_active_streams" if phase == "streams" else "drawbridge_client_connections"
            out.append(f"- {gname} {gauge:.0f} with them, {gauge_closed:.0f} after"
                       + (f"; upstream held {upstream_open} streams" if phase == "streams" else ""))
            out.append(f"- new request (tools/call on a new connection), before: {lat_summary(lat_base)}")
            out.append(f"- new request while they are held: **{lat_summary(lat_loaded)}**\n")
            if failures:
                failed.append(f"{sum(failures.values())} idle {phase} did not open")
            if phase == "streams" and upstream_open < opened:
                failed.append(f"the upstream held {upstream_open} streams, not {opened}")
        finally:
            for w in held:
                w.close()
            await base.stop_drawbridge(gw.proc)
            args.log_lines = base.log_lines(gw.log)
        await asyncio.sleep(1)
    return out, failed


# ---------------------------------------------------------------- main


async def main_async(args) -> int:
    issuer = Issuer(args.exchanged_life)
    upstream = McpUpstream()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        try:
            await issuer.start()
            upstream.port = await upstream.start(0)
            if args.mode == "soak":
                r = await run_soak(args, Path(tmp), issuer, upstream)
                write_csv(out_dir / "soak.csv", r["rows"])
                lines, failed = soak_report(args, r, issuer, upstream)
                plot(out_dir / "soak.png", r["rows"][:-1],
                     f"drawbridge soak: {args.minutes:g} min, {args.rate:g} req/s mixed "
                     f"(full pipeline); dotted: end of warm-up", args.warmup)
                lines.append("\nCSV: soak.csv; plot: soak.png")
                name = "soak.md"
            else:
                lines, failed = await run_idle(args, Path(tmp), issuer, upstream)
                name = "idle.md"
        finally:
            await upstream.stop()
            await issuer.stop()
    text = "\n".join(lines) + "\n"
    if failed:
        text += "\n" + "\n".join(f"FAILED: {f}" for f in failed) + "\n"
    (out_dir / name).write_text(text)
    print(text)
    base.print_log(args.log_lines)
    return 1 if failed else 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("soak", "idle"))
    p.add_argument("--drawbridge", required=True, metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR", help="CSV, PNG and report go here")
    p.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    p.add_argument("--rate", type=float, default=150.0, help="requests per second (default 150)")
    p.add_argument("--warmup", type=float, default=120.0, help="seconds before growth counts (120)")
    p.add_argument("--users", type=int, default=600, help="sessions kept for reuse (600)")
    p.add_argument("--token-life", type=int, default=120, help="user token lifetime, s (120)")
    p.add_argument("--refresh-after", type=int, default=60, help="refresh a user's token after, s (60)")
    p.add_argument("--exchanged-life", type=int, default=120, help="exchanged token lifetime, s (120)")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--idle", type=int, default=10000, help="idle streams / connections (10000)")
    p.add_argument("--keep-open", type=float, default=5.0, help="idle seconds before measuring (5)")
    p.add_argument("--cycles", type=int, default=3, help="rounds of opening and closing them (3)")
    p.add_argument("--settle", type=float, default=15.0, help="seconds before the last RSS (15)")
    p.add_argument("--probes", type=int, default=50, help="new requests timed per state (50)")
    args = p.parse_args()
    if not os.access(args.drawbridge, os.X_OK):
        p.error(f"no executable drawbridge at {args.drawbridge}")
    args.log_lines = []
    return args


def main() -> int:
    args = parse_args()
    try:
        base.raise_fd_limit(4096)  # and the soft limit up to the hard one (see run_idle)
        return asyncio.run(main_async(args))
    except (base.BenchError, OSError) as e:
        base.print_log(args.log_lines)
        print(f"soak: FAILED: {base.describe(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
