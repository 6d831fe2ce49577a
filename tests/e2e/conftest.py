"""Real peers for the drawbridge end-to-end tests.

This module owns starting and stopping processes: the MCP "everything" reference
server (Node, bound to loopback by loopback.mjs), the development authorization server
(authserver/server.mjs, oidc-provider), the `whoami` MCP upstream (whoami_server.py)
and the drawbridge binary in front of them — once with a public route, once with
protected routes that trust the authorization server; for test_prometheus.py a gateway
of its own with every kind of route and a real Prometheus server scraping it; for
test_scale_out.py two drawbridge replicas sharing one session key behind an nginx
round-robin load balancer. Every wait is bounded, every process runs in its own process
group and is stopped at teardown, and every server listens on 127.0.0.1 only. When a
test fails, the peers' logs are attached to its report.

The tests themselves (what MCP traffic is sent, what is asserted) live in test_*.py.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
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
# Taken out of Debian's prometheus .deb by scripts/setup-e2e.sh.
PROMETHEUS_BIN = REPO_ROOT / "target/tools/prometheus"
ALERT_RULES = REPO_ROOT / "deploy/prometheus/rules.yml"
NGINX_BIN = Path("/usr/sbin/nginx")
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
    claims_url: str  # route to whoami (no upstream credential) whose tool needs groups: [sre]
    admin_url: str
    issuer: str


_ports_given: set[int] = set()


def free_port() -> int:
    """A loopback port that was free a moment ago (the small race is acceptable here),
    never one handed out before in this run: two ports picked one after the other (a
    listener and its admin) could otherwise be the same."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no loopback port not handed out before")


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


def upstream_requests(name: str) -> list[str]:
    """The requests an upstream that keeps a request log (whoami) has received so far,
    one line each: method, path, headers."""
    return peer_log_text(f"{name}.requests").splitlines()


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



@contextmanager
def protected_route(name: str, issuer: str, upstream: str, policy: dict,
                    log_dir: Path) -> Iterator[str]:
    """drawbridge with one route, `/NAME/mcp`, protected by the e2e authorization server
    `issuer` (scope `mcp:tools` for everything), no upstream credential and a
    default-deny `policy` (its `tools`, `methods`, `resources`, `prompts`), for as long as
    the block runs. Yields the route's URL."""
    listen_port, admin_port = free_port(), free_port()
    base = f"http://{LOOPBACK}:{listen_port}"
    # JSON is YAML: the policy is written in flow style, exactly as given.
    rules = json.dumps({"default": "deny", **policy})
    config = f"""\
listen: {LOOPBACK}:{listen_port}
admin:
  listen: {LOOPBACK}:{admin_port}
issuers:
  - name: e2e
    issuer: {issuer}
routes:
  - name: {name}
    match: {{ path: /{name}/mcp }}
    public_url: {base}/{name}/mcp
    upstream:
      url: {upstream}
    auth:
      issuers: [e2e]
      required_scopes: [mcp:tools]
    upstream_auth:
      none: {{}}
    policy: {rules}
"""
    proc = start_drawbridge(f"drawbridge-{name}", config, log_dir,
                            f"http://{LOOPBACK}:{admin_port}")
    try:
        yield f"{base}/{name}/mcp"
    finally:
        stop_peer(proc)

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
        # A `groups` claim for the claim rules of the `claims` route.
        "AUTH_GROUPS": "alice=sre+platform;bob=dev",
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
    request_log = peer_log_dir / "whoami.requests"
    request_log.write_text("")
    _peer_logs["whoami.requests"] = request_log
    proc = start_peer("whoami", [sys.executable, str(WHOAMI_ENTRY), str(port)], peer_log_dir,
                      cwd=E2E_DIR, env={**os.environ, "WHOAMI_REQUEST_LOG": str(request_log)})
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
        base_scopes: [mcp:tools]   # what initialize, lists and streams ask for
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
  - name: claims
    match: {{ path: /claims/mcp }}
    public_url: {base}/claims/mcp
    upstream:
      url: {whoami_url}
    auth:
      issuers: [e2e]
      required_scopes: [mcp:tools]
    upstream_auth:
      none: {{}}
    policy:
      default: deny
      tools:
        whoami:                    # a claim rule: alice (sre) may, bob (dev) may not
          claims: {{ groups: [sre] }}
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
            claims_url=f"{base}/claims/mcp",
            admin_url=admin_url,
            issuer=authserver.issuer,
        )
    finally:
        stop_peer(proc)


def metrics_gateway_config(listen_port: int, admin_port: int, issuer: str, everything_url: str,
                           whoami_url: str, dead_url: str) -> str:
    """The protected routes of oauth_gateway_config, plus a public route to the everything
    server and a route whose upstream refuses connections: every metric family has
    something to count."""
    base = f"http://{LOOPBACK}:{listen_port}"
    return oauth_gateway_config(listen_port, admin_port, issuer, everything_url, whoami_url) + f"""\
  - name: public
    match: {{ path: /public/mcp }}
    public_url: {base}/public/mcp
    upstream:
      url: {everything_url}
  - name: dead
    match: {{ path: /dead/mcp }}
    public_url: {base}/dead/mcp
    upstream:
      url: {dead_url}
      timeouts: {{ connect: 2s, read: 5s }}
"""


@dataclass(frozen=True)
class MetricsGateway:
    public_url: str  # public route to server-everything
    everything_url: str  # protected, as in OAuthGateway
    whoami_url: str  # protected, token exchange
    whoami_wide_url: str  # protected, token exchange always refused
    dead_url: str  # public, upstream refuses connections
    base_url: str  # the MCP listener, for paths no route matches
    admin_url: str
    admin_target: str  # host:port of the admin listener, as Prometheus labels `instance`
    issuer: str


@pytest.fixture(scope="module")
def metrics_gateway(authserver, everything_server, whoami_server, peer_log_dir) -> Iterator[MetricsGateway]:
    """A drawbridge of test_prometheus.py's own, so that its counters hold exactly the
    traffic that module sends."""
    listen_port, admin_port, dead_port = free_port(), free_port(), free_port()
    admin_target = f"{LOOPBACK}:{admin_port}"
    env = {
        "DRAWBRIDGE_SESSION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "DRAWBRIDGE_EXCHANGE_SECRET": authserver.drawbridge_secret,
    }
    config = metrics_gateway_config(listen_port, admin_port, authserver.issuer, everything_server,
                                    whoami_server, f"http://{LOOPBACK}:{dead_port}/mcp")
    proc = start_drawbridge("drawbridge-metrics", config, peer_log_dir, f"http://{admin_target}", env)
    base = f"http://{LOOPBACK}:{listen_port}"
    try:
        yield MetricsGateway(
            public_url=f"{base}/public/mcp",
            everything_url=f"{base}/everything/mcp",
            whoami_url=f"{base}/whoami/mcp",
            whoami_wide_url=f"{base}/whoami-wide/mcp",
            dead_url=f"{base}/dead/mcp",
            base_url=base,
            admin_url=f"http://{admin_target}",
            admin_target=admin_target,
            issuer=authserver.issuer,
        )
    finally:
        stop_peer(proc)


# The scrape job's name, as in deploy/prometheus/prometheus.yml: the rules select
# `up{job=~"drawbridge.*"}`.
PROMETHEUS_JOB = "drawbridge"
PROMETHEUS_SCRAPE_INTERVAL = "1s"


@pytest.fixture(scope="module")
def prometheus(metrics_gateway, peer_log_dir) -> Iterator[str]:
    """A real Prometheus server (target/tools/prometheus) on loopback, scraping the
    metrics gateway's admin listener every second and evaluating the alert rules of
    deploy/prometheus/rules.yml every second. Yields its base URL."""
    if not PROMETHEUS_BIN.is_file():
        pytest.fail(f"{PROMETHEUS_BIN} missing: run scripts/setup-e2e.sh", pytrace=False)
    home = peer_log_dir / "prometheus"
    home.mkdir(exist_ok=True)
    port = free_port()
    # JSON is YAML: no YAML library needed.
    config = {
        "global": {"scrape_interval": PROMETHEUS_SCRAPE_INTERVAL, "scrape_timeout": "1s",
                   "evaluation_interval": PROMETHEUS_SCRAPE_INTERVAL},
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": [{
            "job_name": PROMETHEUS_JOB,
            "metrics_path": "/metrics",
            "scheme": "http",
            "static_configs": [{"targets": [metrics_gateway.admin_target]}],
        }],
    }
    (home / "prometheus.yml").write_text(json.dumps(config, indent=2))
    proc = start_peer(
        "prometheus",
        [str(PROMETHEUS_BIN),
         f"--config.file={home / 'prometheus.yml'}",
         f"--storage.tsdb.path={home / 'data'}",
         f"--web.listen-address={LOOPBACK}:{port}",
         f"--web.console.templates={home / 'consoles'}",
         f"--web.console.libraries={home / 'console_libraries'}",
         "--storage.tsdb.retention.time=1h",
         "--log.level=warn"],
        peer_log_dir,
        cwd=home,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(lambda: answers_ok(f"{url}/-/ready"), proc, "prometheus")
        yield url
    finally:
        stop_peer(proc)


@dataclass(frozen=True)
class ScaledOut:
    url: str  # the protected route, through the load balancer
    replica_admin_urls: tuple[str, ...]  # each drawbridge's admin listener
    replica_targets: tuple[str, ...]  # each drawbridge's MCP listener (host:port)
    lb_access_log: Path  # nginx: one line per request, with the replica that served it
    other_key_url: str  # the same route on a third replica with another session key (no LB)
    other_key_admin_url: str
    issuer: str


def scale_out_config(listen_port: int, admin_port: int, lb_port: int, issuer: str,
                     everything_url: str) -> str:
    """One replica's gateway.yaml. Every replica gets the same routes and the same
    session key; `public_url` is the load balancer's URL, the one clients use."""
    return f"""\
listen: {LOOPBACK}:{listen_port}
admin:
  listen: {LOOPBACK}:{admin_port}
workers: 1
sessions:
  keys:
    - id: shared
      secret: ${{DRAWBRIDGE_SESSION_KEY}}
issuers:
  - name: e2e
    issuer: {issuer}
routes:
  - name: everything
    match: {{ path: /everything/mcp }}
    public_url: http://{LOOPBACK}:{lb_port}/everything/mcp
    upstream:
      url: {everything_url}
    auth:
      issuers: [e2e]
      required_scopes: [mcp:tools]
    upstream_auth:
      none: {{}}
"""


def nginx_config(directory: Path, listen_port: int, servers: list[str]) -> str:
    """A plain round-robin reverse proxy: no stickiness, nothing buffered (SSE)."""
    upstream_servers = "\n".join(f"        server {server};" for server in servers)
    # As root, nginx would run its worker as `nobody`, which cannot enter pytest's 0700
    # temporary directories.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""\
{user}worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format lb '$request_method $uri $status upstream=$upstream_addr session=$http_mcp_session_id';
    access_log {directory}/access.log lb;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    upstream drawbridge {{
{upstream_servers}
        keepalive 8;
    }}
    server {{
        listen {LOOPBACK}:{listen_port};
        location / {{
            proxy_pass http://drawbridge;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def scaled_out(authserver, everything_server, peer_log_dir) -> Iterator[ScaledOut]:
    """Two drawbridge replicas with the same configuration and session key (from
    `drawbridge keygen`) behind nginx (round robin, no stickiness), in front of one
    server-everything; and a third replica with another key, outside the balancer."""
    nginx = NGINX_BIN if NGINX_BIN.is_file() else None
    if nginx is None:
        pytest.fail(f"{NGINX_BIN} missing: run scripts/setup-e2e.sh", pytrace=False)
    if not DRAWBRIDGE_BIN.is_file():
        pytest.fail(f"drawbridge binary not found at {DRAWBRIDGE_BIN}", pytrace=False)
    key = subprocess.run([str(DRAWBRIDGE_BIN), "keygen"], capture_output=True, text=True,
                         timeout=10, check=True).stdout.strip()
    assert len(base64.b64decode(key)) == 32, "drawbridge keygen: not 32 bytes of base64"
    lb_port = free_port()
    procs: list[subprocess.Popen] = []
    try:
        admin_urls, targets = [], []
        for index in (1, 2):
            listen_port, admin_port = free_port(), free_port()
            admin_url = f"http://{LOOPBACK}:{admin_port}"
            config = scale_out_config(listen_port, admin_port, lb_port, authserver.issuer,
                                      everything_server)
            procs.append(start_drawbridge(f"drawbridge-replica-{index}", config, peer_log_dir,
                                          admin_url, {"DRAWBRIDGE_SESSION_KEY": key}))
            admin_urls.append(admin_url)
            targets.append(f"{LOOPBACK}:{listen_port}")
        # A control: the same configuration (key id included) with another secret, as when
        # replicas are given different Secrets; not behind the load balancer.
        listen_port, admin_port = free_port(), free_port()
        procs.append(start_drawbridge(
            "drawbridge-other-key",
            scale_out_config(listen_port, admin_port, lb_port, authserver.issuer, everything_server),
            peer_log_dir, f"http://{LOOPBACK}:{admin_port}",
            {"DRAWBRIDGE_SESSION_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}))
        other_key_url = f"http://{LOOPBACK}:{listen_port}/everything/mcp"
        other_key_admin_url = f"http://{LOOPBACK}:{admin_port}"
        directory = peer_log_dir / "nginx-lb"
        directory.mkdir(exist_ok=True)
        (directory / "nginx.conf").write_text(nginx_config(directory, lb_port, targets))
        lb = start_peer("nginx-lb", [str(nginx), "-p", str(directory), "-c",
                                     str(directory / "nginx.conf"), "-e",
                                     str(directory / "error.log")], peer_log_dir)
        procs.append(lb)
        wait_until(lambda: accepts_connections(lb_port), lb, "nginx-lb")
        yield ScaledOut(
            url=f"http://{LOOPBACK}:{lb_port}/everything/mcp",
            replica_admin_urls=tuple(admin_urls),
            replica_targets=tuple(targets),
            lb_access_log=directory / "access.log",
            other_key_url=other_key_url,
            other_key_admin_url=other_key_admin_url,
            issuer=authserver.issuer,
        )
    finally:
        for proc in reversed(procs):
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


def pytest_terminal_summary(terminalreporter):
    """Counts the cases that exercise only a peer (the `[upstream]` baselines, which reach
    the MCP server directly) apart from those that go through the gateway."""
    passed = terminalreporter.stats.get("passed", [])
    baseline = [r for r in passed if r.nodeid.endswith("[upstream]")]
    terminalreporter.write_line(
        f"e2e: {len(passed) - len(baseline)} passed through the gateway, "
        f"{len(baseline)} passed baselines against the peer alone ([upstream])")
