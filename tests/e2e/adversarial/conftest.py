"""Peers of the adversarial suite: two canonical MCP servers that log what they execute, a
test issuer whose tokens the tests mint, and one drawbridge in front of both servers.

- ts_server.mjs: the official TypeScript SDK (createMcpExpressApp, stateful Streamable
  HTTP with an event store, legacy HTTP+SSE);
- py_server.py: the official Python SDK (MCPServer, Streamable HTTP and legacy SSE);
- an issuer on loopback (OIDC discovery + JWKS, one RSA key) in this process: tokens are
  signed here with PyJWT, so every case can hold exactly `mcp:tools tools:echo`;
- drawbridge ($DRAWBRIDGE_BIN) with a route per server and transport, policy
  `default: deny` allowing only `echo`, the prompt `greeting` and `test://public/*`.

Starting, stopping and log attachment reuse tests/e2e/conftest.py (free loopback ports,
own process groups, bounded waits, logs on failure). Peers live for the whole session.
This directory is a package so that this conftest does not shadow tests/e2e/conftest.py
for the modules that `from conftest import …`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import (E2E_DIR, LOOPBACK, _peer_logs, accepts_connections, free_port,
                      start_drawbridge, start_peer, stop_peer, wait_until)

from .wire import (WAIT_S, ExecLog, Legacy, Reply, Streamable, barrier, marker,
                   tools_call)

ADV_DIR = Path(__file__).resolve().parent
TS_SERVER = ADV_DIR / "ts_server.mjs"
PY_SERVER = ADV_DIR / "py_server.py"
KEY_ID = "adv-1"
CALLER_SCOPES = "mcp:tools tools:echo"

# route name -> (path prefix on the gateway, server, path on the server)
ROUTES = {
    "ts-mcp": ("/ts/mcp", "ts", "/mcp"),
    "ts-legacy": ("/ts/legacy", "ts", "/"),
    "py-mcp": ("/py/mcp", "py", "/mcp"),
    "py-legacy": ("/py/legacy", "py", "/"),
}
# Legacy streams whose endpoint lies outside the upstream base path (class 3): the gateway
# cannot map it into the route's path space. Configured, but not in the `route` fixture.
OUTSIDE_ROUTES = {
    "ts-outside": ("/ts/outside", "ts", "/outside/"),
    "py-outside": ("/py/outside", "py", "/outside/"),
}
# Routes whose `echo` has argument rules (issue 20): `target` under /srv/data, nothing else
# but a short `message` (and, in shadow mode, a lower-case one: recorded, not enforced).
# Configured, but not in the `route` fixture.
ARGS_ROUTES = {
    "ts-args": ("/ts/args", "ts", "/mcp"),
    "py-args": ("/py/args", "py", "/mcp"),
}
STREAMABLE_ROUTES = ("ts-mcp", "py-mcp")
LEGACY_ROUTES = ("ts-legacy", "py-legacy")
ALL_ROUTES = {**ROUTES, **OUTSIDE_ROUTES, **ARGS_ROUTES}


class Issuer:
    """An OAuth issuer on loopback: discovery and a JWKS; `mint` signs access tokens."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._pem = self._key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        numbers = self._key.public_key().public_numbers()
        jwk = {"kty": "RSA", "kid": KEY_ID, "use": "sig", "alg": "RS256",
               "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
               "e": _b64url(numbers.e.to_bytes(3, "big"))}
        port = free_port()
        self.url = f"http://{LOOPBACK}:{port}"
        documents = {
            "/.well-known/openid-configuration": {
                "issuer": self.url, "jwks_uri": f"{self.url}/jwks",
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]},
            "/jwks": {"keys": [jwk]},
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                document = documents.get(self.path)
                body = json.dumps(document or {"error": "not_found"}).encode()
                self.send_response(200 if document else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def mint(self, audience: str, scope: str = CALLER_SCOPES, subject: str = "mallory") -> str:
        now = int(time.time())
        claims = {"iss": self.url, "sub": subject, "aud": audience, "client_id": "adv-client",
                  "scope": scope, "iat": now, "nbf": now, "exp": now + 600,
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._pem, algorithm="RS256",
                          headers={"kid": KEY_ID, "typ": "at+jwt"})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Server:
    name: str  # "ts" or "py"
    base: str  # http://127.0.0.1:PORT
    log: ExecLog


@dataclass(frozen=True)
class AdvGateway:
    base: str  # http://127.0.0.1:PORT of the MCP listener
    servers: dict  # "ts"/"py" -> Server
    issuer: Issuer
    tokens: dict  # route name -> a token holding CALLER_SCOPES for that route
    admin: str = ""  # http://127.0.0.1:PORT of the admin listener (/metrics)

    def prefix(self, route: str) -> str:
        return ALL_ROUTES[route][0]

    def server_of(self, route: str) -> Server:
        return self.servers[ALL_ROUTES[route][1]]

    def public_url(self, route: str) -> str:
        return self.base + ALL_ROUTES[route][0]


@pytest.fixture(scope="session")
def adv_issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    try:
        yield issuer
    finally:
        issuer.stop()


def _start_server(name: str, argv: list[str], port: int, log_dir: Path, env: dict | None = None):
    proc = start_peer(f"adv-{name}", argv, log_dir, cwd=E2E_DIR, env=env)
    try:
        wait_until(lambda: accepts_connections(port), proc, f"adv-{name}")
    except BaseException:
        stop_peer(proc)
        raise
    return proc


@pytest.fixture(scope="session")
def ts_server(peer_log_dir) -> Iterator[Server]:
    port = free_port()
    log = peer_log_dir / "adv-ts-exec.jsonl"
    log.touch()
    _peer_logs["adv-ts-exec"] = log  # attached to failing tests' reports
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(peer_log_dir),
           "PORT": str(port), "EXEC_LOG": str(log)}
    proc = _start_server("ts", ["node", str(TS_SERVER)], port, peer_log_dir, env)
    try:
        yield Server("ts", f"http://{LOOPBACK}:{port}", ExecLog(log))
    finally:
        stop_peer(proc)


@pytest.fixture(scope="session")
def py_server(peer_log_dir) -> Iterator[Server]:
    port = free_port()
    log = peer_log_dir / "adv-py-exec.jsonl"
    log.touch()
    _peer_logs["adv-py-exec"] = log
    proc = _start_server("py", [sys.executable, str(PY_SERVER), str(port), str(log)], port,
                         peer_log_dir)
    try:
        yield Server("py", f"http://{LOOPBACK}:{port}", ExecLog(log))
    finally:
        stop_peer(proc)


ECHO_WITH_ARGUMENTS = """
          scopes: [tools:echo]
          additional_arguments: deny
          arguments:
            target: { glob: '/srv/data/**' }
            message: { max_length: 64, optional: true }
            /message: { regex: '[a-z ]*', optional: true, mode: shadow }"""


# On the `*-args` routes: `search` with its nested options bounded by JSON pointer.
SEARCH_WITH_ARGUMENTS = """
          scopes: [tools:echo]
          additional_arguments: deny
          arguments:
            query: { max_length: 64 }
            /options/depth: { min: 0, max: 3 }
            /options/mode: { one_of: [fast, deep], optional: true }"""


def adv_gateway_config(listen_port: int, admin_port: int, issuer: str,
                       servers: dict[str, Server]) -> str:
    base = f"http://{LOOPBACK}:{listen_port}"
    routes = []
    for name, (prefix, server, upstream_path) in ALL_ROUTES.items():
        echo = ECHO_WITH_ARGUMENTS if name in ARGS_ROUTES else "[tools:echo]"
        search = f"        search: {SEARCH_WITH_ARGUMENTS}\n" if name in ARGS_ROUTES else ""
        routes.append(f"""\
  - name: {name}
    match: {{ path: {prefix} }}
    public_url: {base}{prefix}
    upstream:
      url: {servers[server].base}{upstream_path}
      timeouts: {{ connect: 2s, read: 20s, stream_idle: 30s }}
    auth:
      issuers: [adv]
      required_scopes: [mcp:tools]
    upstream_auth:
      none: {{}}
    policy:
      default: deny
      tools:
        echo: {echo}
{search}      prompts:
        greeting: [tools:echo]
      resources:
        "test://public/*": [tools:echo]
""")
    return f"""\
listen: {LOOPBACK}:{listen_port}
admin:
  listen: {LOOPBACK}:{admin_port}
workers: 2
sessions:
  keys:
    - id: adv
      secret: ${{DRAWBRIDGE_SESSION_KEY}}
issuers:
  - name: adv
    issuer: {issuer}
    algorithms: [RS256]
routes:
""" + "".join(routes)


@pytest.fixture(scope="session")
def adv_gateway(adv_issuer, ts_server, py_server, peer_log_dir) -> Iterator[AdvGateway]:
    listen_port, admin_port = free_port(), free_port()
    servers = {"ts": ts_server, "py": py_server}
    env = {"DRAWBRIDGE_SESSION_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}
    proc = start_drawbridge("drawbridge-adversarial",
                            adv_gateway_config(listen_port, admin_port, adv_issuer.url, servers),
                            peer_log_dir, f"http://{LOOPBACK}:{admin_port}", env)
    base = f"http://{LOOPBACK}:{listen_port}"
    tokens = {route: adv_issuer.mint(base + prefix)
              for route, (prefix, _, _) in ALL_ROUTES.items()}
    try:
        yield AdvGateway(base=base, servers=servers, issuer=adv_issuer, tokens=tokens,
                         admin=f"http://{LOOPBACK}:{admin_port}")
    finally:
        stop_peer(proc)


class Client:
    """One initialized MCP session through the gateway on a route, whatever its transport:
    `send` posts exact bytes, `answer` finds the answer to a request id (in the POST's
    reply on Streamable HTTP, on the GET stream on the legacy transport)."""

    def __init__(self, gateway: AdvGateway, route: str, token: str | None = None):
        self.route, self.gateway = route, gateway
        self.server = gateway.server_of(route)
        token = token or gateway.tokens[route]
        prefix = gateway.prefix(route)
        self.legacy = route in LEGACY_ROUTES
        if self.legacy:
            self.session = Legacy(gateway.base, f"{prefix}/sse", token).initialize()
        else:
            self.session = Streamable(gateway.base, prefix, token).initialize()

    def send(self, message, content_type: str | None = "application/json",
             extra: list[tuple[str, str]] | None = None, target: str | None = None) -> Reply:
        return self.session.post(message, content_type=content_type, extra=extra, target=target)

    def answer(self, request_id, reply: Reply, timeout: float = WAIT_S):
        """The answer to `request_id`: None when the gateway refused the POST or none came."""
        for message in reply.messages():
            if isinstance(message, dict) and message.get("id") == request_id:
                return message
        if self.legacy and reply.status == 202:
            return self.session.answer(request_id, timeout)
        return None

    def settle(self) -> None:
        """Everything sent so far has been handled: on the legacy transport a POST is
        answered 202 before it runs, so an allowed call is sent and its run awaited."""
        if self.legacy and not self.session.stream.ended:
            # (A stream the gateway has ended carries nothing more to the client, and its
            # session is gone upstream: only the barrier below applies.)
            value = marker()
            reply = self.send(tools_call("echo", {"message": value}, "settle-" + value))
            assert reply.status == 202, (reply.status, reply.text())
            assert self.server.log.executed_marker(value), f"settle call {value} never ran"
            # Answers share one stream, in order: once this one is here, so is every
            # earlier one.
            assert self.session.answer("settle-" + value) is not None, "settle answer missing"
        barrier(self.server.base, self.server.log)

    def received(self, reply: Reply) -> str:
        """Everything the client got for a request: the reply, and on the legacy
        transport the whole event stream so far (call settle() first)."""
        text = reply.text()
        if self.legacy:
            text += self.session.stream.raw_text()
        return text

    def close(self) -> None:
        if self.legacy:
            self.session.close()


@pytest.fixture
def client_factory(adv_gateway) -> Iterator:
    """client_factory(route) -> an initialized Client; all closed at teardown."""
    opened: list[Client] = []

    def open_client(route: str, token: str | None = None) -> Client:
        client = Client(adv_gateway, route, token)
        opened.append(client)
        return client

    try:
        yield open_client
    finally:
        for client in opened:
            client.close()


@pytest.fixture(params=list(ROUTES))
def route(request) -> str:
    """Each of the four routes: TypeScript and Python, Streamable HTTP and legacy SSE."""
    return request.param


# Peers whose logs matter to an adversarial case; tests/e2e/conftest.py attaches every
# peer's log to a failing test, and the other peers' logs only bury these.
OWN_LOGS = ("adv-", "drawbridge-adversarial")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep only this suite's peers' logs in the report of a failing adversarial case.
    Registered after tests/e2e/conftest.py's wrapper, so it runs outside it and sees the
    sections that one appended."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections = [(title, text) for title, text in report.sections
                           if not title.endswith(" (tail)") or title.startswith(OWN_LOGS)]
