"""Real peers for the drawbridge end-to-end tests.

This module owns starting and stopping processes: the MCP "everything" reference
server (Node, bound to loopback by loopback.mjs), the development authorization server
(authserver/server.mjs, oidc-provider), the `whoami` MCP upstream (whoami_server.py)
and the drawbridge binary in front of them — once with a public route, once with
protected routes that trust the authorization server. Every wait is bounded, every
process runs in its own process group and is stopped at teardown, and every server
listens on 127.0.0.1 only. When a test fails, the peers' logs are attached to its report.

The tests themselves (what MCP traffic is sent, what is asserted) live in test_*.py.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent.parent
EVERYTHING_ENTRY = E2E_DIR / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
AUTHSERVER_ENTRY = E2E_DIR / "authserver/server.mjs"
WHOAMI_ENTRY = E2E_DIR / "whoami_server.py"
DRAWBRIDGE_BIN = Path(os.environ.get("DRAWBRIDGE_BIN", REPO_ROOT / "target/debug/drawbridge"))
# The token-exchange audience of the whoami route (the upstream's own name, not a URL).
WHOAMI_AUDIENCE = "whoami-upstream"
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
LOG_TAIL_CHARS = 8000

# name -> log file of every peer started in this run, attached to failing tests.
_peer_logs: dict[str, Path] = {}

# Plain urllib without proxies: the admin endpoints are on loopback.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Gateway:
    url: str  # the MCP route through the gateway
    admin_url: str  # base of /metrics, /healthz, /readyz


@dataclass(frozen=True)
class AuthServer:
    issuer: str  # also the base URL: discovery at /.well-known/openid-configuration
    drawbridge_secret: str  # client secret of the pre-registered client `drawbridge`


@dataclass(frozen=True)
class OAuthGateway:
    everything_url: str  # protected route to server-everything (upstream_auth none)
    whoami_url: str  # protected route to whoami (token exchange)
    opaque_url: str  # like everything_url, but the AS issues opaque tokens (introspection)
    whoami_wide_url: str  # token exchange for a scope the user's token lacks: always refused
    admin_url: str
    issuer: str


def free_port() -> int:
    """A loopback port that was free a moment ago (the small race is acceptable here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET a URL; returns (status, body) for any HTTP status."""
    try:
        with _http.open(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def peer_log_text(name: str) -> str:
    """Everything a peer started in this run has logged so far."""
    path = _peer_logs[name]
    return path.read_text(errors="replace") if path.exists() else ""


def log_tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-LOG_TAIL_CHARS:] or "(empty)"


def start_peer(name: str, argv: list[str], log_dir: Path, **popen_args) -> subprocess.Popen:
    """Start a process in its own process group, output to <log_dir>/<name>.log."""
    log_path = log_dir / f"{name}.log"
    _peer_logs[name] = log_path
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen_args,
        )


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, name: str) -> None:
    """Poll `ready` until it is true; fail with the peer's log if it exits or times out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode} during start-up:\n"
                        f"{log_tail(_peer_logs[name])}", pytrace=False)
        if ready():
            return
        time.sleep(0.1)
    pytest.fail(f"{name} not ready after {STARTUP_TIMEOUT_S:.0f}s:\n"
                f"{log_tail(_peer_logs[name])}", pytrace=False)


def stop_peer(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL it after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=STOP_GRACE_S)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.wait(timeout=STOP_GRACE_S)


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def answers_ok(url: str) -> bool:
    try:
        return http_get(url, timeout=1.0)[0] == 200
    except OSError:  # refused, reset or timed out: not ready yet
        return False


@pytest.fixture(scope="session")
def peer_log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="session")
def everything_server(peer_log_dir) -> Iterator[str]:
    """The everything server's MCP endpoint, e.g. http://127.0.0.1:PORT/mcp."""
    if not EVERYTHING_ENTRY.exists():
        pytest.fail(f"{EVERYTHING_ENTRY} missing: run scripts/setup-e2e.sh", pytrace=False)
    port = free_port()
    home = peer_log_dir / "everything-home"
    home.mkdir(exist_ok=True)
    # Its get-env tool returns its environment verbatim: give it nothing worth leaking.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PORT": str(port)}
    proc = start_peer(
        "everything",
        ["node", "--import", "./loopback.mjs", str(EVERYTHING_ENTRY), "streamableHttp"],
        peer_log_dir,
        cwd=E2E_DIR,
        env=env,
    )
    try:
        wait_until(lambda: accepts_connections(port), proc, "everything")
        yield f"http://{LOOPBACK}:{port}/mcp"
    finally:
        stop_peer(proc)


def gateway_config(listen_port: int, admin_port: int, upstream_url: str) -> str:
    """A gateway.yaml (v1) with one public route to the everything server."""
    return f"""\
listen: {LOOPBACK}:{listen_port}
admin:
  listen: {LOOPBACK}:{admin_port}
routes:
  - name: everything
    match: {{ path: /everything/mcp }}
    public_url: http://{LOOPBACK}:{listen_port}/everything/mcp
    upstream:
      url: {upstream_url}
"""


def start_drawbridge(name: str, config_text: str, log_dir: Path, admin_url: str,
                     env: dict[str, str] | None = None) -> subprocess.Popen:
    """drawbridge (from $DRAWBRIDGE_BIN or target/debug) with this config, once ready."""
    if not DRAWBRIDGE_BIN.is_file():
        pytest.fail(f"drawbridge binary not found at {DRAWBRIDGE_BIN}: build it first "
                    "or set DRAWBRIDGE_BIN", pytrace=False)
    config = log_dir / f"{name}.yaml"
    config.write_text(config_text)
    proc = start_peer(
        name,
        [str(DRAWBRIDGE_BIN), "run", "--config", str(config)],
        log_dir,
        # plain log lines in failure reports
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )
    try:
        wait_until(lambda: answers_ok(f"{admin_url}/readyz"), proc, name)
    except BaseException:
        stop_peer(proc)
        raise
    return proc


@pytest.fixture(scope="session")
def gateway(everything_server, peer_log_dir) -> Iterator[Gateway]:
    """drawbridge with a public route to the everything server."""
    listen_port, admin_port = free_port(), free_port()
    admin_url = f"http://{LOOPBACK}:{admin_port}"
    proc = start_drawbridge(
        "drawbridge", gateway_config(listen_port, admin_port, everything_server),
        peer_log_dir, admin_url,
    )
    try:
        yield Gateway(url=f"http://{LOOPBACK}:{listen_port}/everything/mcp", admin_url=admin_url)
    finally:
        stop_peer(proc)


@pytest.fixture(scope="session")
def authserver(peer_log_dir) -> Iterator[AuthServer]:
    """The development authorization server (oidc-provider), issuer http://127.0.0.1:PORT."""
    if not (E2E_DIR / "node_modules/oidc-provider").is_dir():
        pytest.fail("oidc-provider missing: run scripts/setup-e2e.sh", pytrace=False)
    port = free_port()
    issuer = f"http://{LOOPBACK}:{port}"
    secret = secrets.token_urlsafe(24)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(peer_log_dir),
        "PORT": str(port),
        "DRAWBRIDGE_CLIENT_SECRET": secret,
        "AUTH_USERS": "alice,bob",
        # Tokens for resources under /opaque/ are opaque: drawbridge must introspect them.
        "OPAQUE_PATHS": "/opaque/",
    }
    proc = start_peer(
        "authserver",
        ["node", "--import", "./loopback.mjs", str(AUTHSERVER_ENTRY)],
        peer_log_dir,
        cwd=E2E_DIR,
        env=env,
    )
    try:
        wait_until(lambda: answers_ok(f"{issuer}/.well-known/openid-configuration"), proc, "authserver")
        yield AuthServer(issuer=issuer, drawbridge_secret=secret)
    finally:
        stop_peer(proc)


@pytest.fixture(scope="session")
def whoami_server(peer_log_dir) -> Iterator[str]:
    """The whoami upstream's MCP endpoint: it reports the Authorization it received."""
    port = free_port()
    proc = start_peer("whoami", [sys.executable, str(WHOAMI_ENTRY), str(port)], peer_log_dir,
                      cwd=E2E_DIR)
    try:
        wait_until(lambda: accepts_connections(port), proc, "whoami")
        yield f"http://{LOOPBACK}:{port}/mcp"
    finally:
        stop_peer(proc)


def oauth_gateway_config(listen_port: int, admin_port: int, issuer: str, everything_url: str,
                         whoami_url: str) -> str:
    """A gateway.yaml (v1) with routes protected by the e2e authorization server."""
    base = f"http://{LOOPBACK}:{listen_port}"
    return f"""\
listen: {LOOPBACK}:{listen_port}
admin:
  listen: {LOOPBACK}:{admin_port}
sessions:
  keys:
    - id: e2e
      secret: ${{DRAWBRIDGE_SESSION_KEY}}
issuers:
  - name: e2e
    issuer: {issuer}
    introspection:                 # for the opaque tokens of the `opaque` route
      client_id: drawbridge
      client_secret: ${{DRAWBRIDGE_EXCHANGE_SECRET}}
routes:
  - name: everything
    match: {{ path: /everything/mcp }}
    public_url: {base}/everything/mcp
    upstream:
      url: {everything_url}
    auth:
      issuers: [e2e]
      required_scopes: [mcp:tools]
    upstream_auth:
      none: {{}}
    policy:
      default: deny
      tools:
        echo: [tools:echo]
        trigger-long-running-operation: [tools:echo]
  - name: whoami
    match: {{ path: /whoami/mcp }}
    public_url: {base}/whoami/mcp
    upstream:
      url: {whoami_url}
    auth:
      issuers: [e2e]
      required_scopes: [mcp:tools]
    upstream_auth:
      token_exchange:
        issuer: e2e
        client_id: drawbridge
        client_secret: ${{DRAWBRIDGE_EXCHANGE_SECRET}}
        audience: {WHOAMI_AUDIENCE}
        scopes: per_operation
    policy:
      default: deny
      tools:
        whoami: [tools:read]
  - name: whoami-wide
    match: {{ path: /whoami-wide/mcp }}
    public_url: {base}/whoami-wide/mcp
    upstream:
      url: {whoami_url}
    auth:
      issuers: [e2e]
      required_scopes: [mcp:tools]
    upstream_auth:
      token_exchange:              # asks for more than any user token here carries
        issuer: e2e
        client_id: drawbridge
        client_secret: ${{DRAWBRIDGE_EXCHANGE_SECRET}}
        audience: {WHOAMI_AUDIENCE}
        scopes: [tools:admin]
  - name: opaque
    match: {{ path: /opaque/mcp }}
    public_url: {base}/opaque/mcp
    upstream:
      url: {everything_url}
    auth:
      issuers: [e2e]
      required_scopes: [mcp:tools]
    upstream_auth:
      none: {{}}
    policy:
      default: deny
      tools:
        echo: [tools:echo]
"""


@pytest.fixture(scope="session")
def oauth_gateway(authserver, everything_server, whoami_server, peer_log_dir) -> Iterator[OAuthGateway]:
    """drawbridge with routes protected by the e2e authorization server."""
    listen_port, admin_port = free_port(), free_port()
    admin_url = f"http://{LOOPBACK}:{admin_port}"
    env = {
        "DRAWBRIDGE_SESSION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "DRAWBRIDGE_EXCHANGE_SECRET": authserver.drawbridge_secret,
    }
    config = oauth_gateway_config(listen_port, admin_port, authserver.issuer, everything_server,
                                  whoami_server)
    proc = start_drawbridge("drawbridge-oauth", config, peer_log_dir, admin_url, env)
    base = f"http://{LOOPBACK}:{listen_port}"
    try:
        yield OAuthGateway(
            everything_url=f"{base}/everything/mcp",
            whoami_url=f"{base}/whoami/mcp",
            opaque_url=f"{base}/opaque/mcp",
            whoami_wide_url=f"{base}/whoami-wide/mcp",
            admin_url=admin_url,
            issuer=authserver.issuer,
        )
    finally:
        stop_peer(proc)


@pytest.fixture(params=["upstream", "gateway"])
def mcp_url(request) -> str:
    """The same MCP server reached directly (baseline) and through drawbridge."""
    if request.param == "upstream":
        return request.getfixturevalue("everything_server")
    return request.getfixturevalue("gateway").url


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the peers' logs to the report of a failing test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, path in _peer_logs.items():
            report.sections.append((f"{name} log (tail)", log_tail(path)))
