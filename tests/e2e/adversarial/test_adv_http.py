"""HTTP-level classes of issue 16, each asserted on what the servers received and ran:

- 9, methods: MCP uses POST for messages, GET for streams, DELETE to end a session. A
  body on GET or DELETE is refused; any other method (PUT, PATCH, lowercase `post`, …)
  gets 405; the server never sees them.
- 10, path dot segments: raw or percent-encoded `.`/`..` segments, encoded slashes and
  backslashes are refused with 400 before routing; the server never sees them.
- 11, token in the URL: any query (or `;` path) parameter whose decoded name is
  `access_token`, in any case, is refused (400); the token never reaches a server.
- 12, Origin: a request carrying an Origin the route does not allow is refused (403) and
  runs nothing (DNS rebinding from a hostile page).
- 13, pipelining and framing: two requests written at once are both served, or the first
  answer closes the connection; Content-Length and Transfer-Encoding in conflict never
  run what the gateway did not check, and get 400 (or the connection is closed).
- 14, Cookie and duplicated Mcp-* headers: a Cookie never reaches the server; two
  `Mcp-Name` (or any duplicated `Mcp-*`) headers are refused.
"""

from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.parse

import pytest

from .wire import (EventStream, Legacy, Reply, barrier, encode, header_pairs, marker, request,
                   split_base, tools_call)

STREAM_WAIT_S = 2.0


def target_for(client, suffix: str = "", query: str = "") -> str:
    """The route's request target: the legacy endpoint (with its session) or the route path,
    with `suffix` appended to the path and `query` to the query."""
    if client.legacy:
        endpoint = urllib.parse.urlsplit(client.session.endpoint)
        path, base_query = endpoint.path + suffix, endpoint.query
    else:
        path, base_query = client.gateway.prefix(client.route) + suffix, ""
    joined = "&".join(q for q in (base_query, query) if q)
    return path + (f"?{joined}" if joined else "")


# --- 9: methods ---------------------------------------------------------------------

METHODS = ["GET", "DELETE", "PUT", "PATCH", "post", "Post", "PROPFIND", "OPTIONS"]


@pytest.mark.parametrize("method", METHODS)
def test_a_call_body_on_another_method_never_reaches_the_server(client_factory, route, method):
    client = client_factory(route)
    log, mark = client.server.log, client.server.log.mark()
    body = encode(tools_call("admin-delete", {"target": "everything"}, 901))
    headers = client.session.headers()
    try:
        reply = request(client.gateway.base, method, target_for(client), headers, body,
                        timeout=STREAM_WAIT_S)
    except TimeoutError:  # a GET was forwarded and opened an event stream
        reply = Reply(200, [], b"(an event stream was opened)")
    except (http.client.HTTPException, ConnectionError):  # the server hung up on it
        reply = Reply(0, [], b"(connection closed without an answer)")
    received = [r for r in log.requests(mark) if "/barrier/" not in r["url"]]
    client.settle()
    assert log.forbidden_executions(mark) == [], f"ran a forbidden tool ({reply.status})"
    for entry in received:
        assert entry["method"] in ("POST", "GET", "DELETE"), entry
        if entry["method"] in ("GET", "DELETE"):
            lengths = [v for k, v in header_pairs(entry) if k == "content-length"]
            chunked = [v for k, v in header_pairs(entry) if k == "transfer-encoding"]
            assert not chunked and all(v.strip() == "0" for v in lengths), entry
    if method in ("GET", "DELETE"):
        assert 400 <= reply.status < 500, (reply.status, reply.text())
    elif method == "OPTIONS":
        # A gateway answering CORS preflights answers OPTIONS itself: any non-error
        # answer of its own is fine, as long as nothing was forwarded (checked above).
        assert 200 <= reply.status < 500 and reply.status != 0, (reply.status, reply.text())
    else:
        assert reply.status == 405, (reply.status, reply.text())


# --- 10: dot segments ---------------------------------------------------------------

DOT_SUFFIXES = {
    "raw-dotdot": "/../sse",
    "raw-dotdot-twice": "/../../ts/legacy/sse",
    "encoded-dotdot": "/%2e%2e/sse",
    "encoded-dotdot-upper": "/%2E%2E/sse",
    "half-encoded": "/.%2e/sse",
    "half-encoded-other": "/%2e./sse",
    "trailing-dotdot": "/..",
    "trailing-encoded-dotdot": "/%2e%2e",
    "single-dot": "/./sse",
    "encoded-single-dot": "/%2e/sse",
    "encoded-slash": "/..%2fsse",
    "encoded-slash-upper": "%2F..%2Fsse",
    "encoded-backslash": "/..%5csse",
    "raw-backslash": "\\..\\sse",
}


@pytest.mark.parametrize("suffix", list(DOT_SUFFIXES.values()), ids=list(DOT_SUFFIXES))
def test_dot_segments_are_refused_before_routing(client_factory, route, suffix):
    client = client_factory(route)
    log, mark, value = client.server.log, client.server.log.mark(), marker()
    prefix = client.gateway.prefix(route)
    reply = client.session.post(tools_call("echo", {"message": value}, 1001),
                                target=prefix + suffix) if not client.legacy else \
        client.send(tools_call("echo", {"message": value}, 1001), target=target_for(client, suffix))
    received = [r["url"] for r in log.requests(mark) if "/barrier/" not in r["url"]]
    client.settle()
    assert not log.executed_marker(value, mark, timeout=0), "the call ran"
    suspicious = re.compile(r"(^|/)\.\.?(/|$|\?)|%2e|%2f|%5c|\\", re.IGNORECASE)
    assert [u for u in received if suspicious.search(urllib.parse.urlsplit(u).path)] == []
    assert reply.status == 400, (reply.status, reply.text())


# --- 11: token in the URL -----------------------------------------------------------

TOKEN_QUERIES = {
    "plain": "access_token={tok}",
    "encoded-underscore": "access%5Ftoken={tok}",
    "encoded-underscore-lower": "access%5ftoken={tok}",
    "upper": "ACCESS_TOKEN={tok}",
    "mixed": "Access_Token={tok}",
    "encoded-first-letter": "%61ccess_token={tok}",
    "encoded-equals-in-name": "access_token%3D={tok}",
    "after-another": "x=1&access%5Ftoken={tok}",
}


@pytest.mark.parametrize("query", list(TOKEN_QUERIES.values()), ids=list(TOKEN_QUERIES))
def test_a_token_in_the_query_is_refused_and_never_reaches_the_server(client_factory, route,
                                                                       query):
    client = client_factory(route)
    token = client.gateway.tokens[route]
    log, mark, value = client.server.log, client.server.log.mark(), marker()
    reply = client.send(tools_call("echo", {"message": value}, 1101),
                        target=target_for(client, query=query.format(tok=token)))
    client.settle()
    assert token not in log.text(mark), "the caller's token reached the server"
    assert not log.executed_marker(value, mark, timeout=0), "the call ran"
    # 400, or the 401 invalid_request the gateway gives a plain `access_token` parameter.
    assert reply.status in (400, 401), (reply.status, reply.text())


def test_a_token_as_a_path_parameter_is_refused(client_factory, route):
    client = client_factory(route)
    token = client.gateway.tokens[route]
    log, mark, value = client.server.log, client.server.log.mark(), marker()
    target = target_for(client)
    path, sep, query = target.partition("?")
    reply = client.send(tools_call("echo", {"message": value}, 1102),
                        target=f"{path};access_token={token}{sep}{query}")
    client.settle()
    assert token not in log.text(mark), "the caller's token reached the server"
    assert not log.executed_marker(value, mark, timeout=0), "the call ran"
    # 400, or the 401 invalid_request the gateway gives a plain `access_token` parameter.
    assert reply.status in (400, 401), (reply.status, reply.text())


@pytest.mark.parametrize("query", ["access%5Ftoken={tok}", "ACCESS_TOKEN={tok}"],
                         ids=["encoded-underscore", "upper"])
def test_a_token_in_a_stream_url_never_reaches_the_server(adv_gateway, route, query):
    """The GET that opens an event stream (Streamable HTTP's, or the legacy `/sse`)."""
    server, token = adv_gateway.server_of(route), adv_gateway.tokens[route]
    path = adv_gateway.prefix(route) + ("/sse" if route.endswith("legacy") else "")
    mark = server.log.mark()
    stream = EventStream(adv_gateway.base, f"{path}?{query.format(tok=token)}",
                         [("Accept", "text/event-stream"), ("Authorization", f"Bearer {token}")])
    try:
        stream.wait(lambda: bool(stream.events), timeout=STREAM_WAIT_S)
    finally:
        stream.close()
    barrier(server.base, server.log)
    assert token not in server.log.text(mark), "the caller's token reached the server"
    assert stream.status in (400, 401), (stream.status, stream.raw_text())


# --- 12: Origin ----------------------------------------------------------------------

def hostile_origins(gateway_base: str) -> dict[str, str]:
    host_port = gateway_base.removeprefix("http://")
    return {
        "evil-site": "http://evil.example",
        "null": "null",
        "lookalike": "http://127.0.0.1.evil.example",
        "other-port": "http://127.0.0.1:1",
        "localhost-name": "http://localhost:1",
        "https-scheme": f"https://{host_port}",
    }


ORIGIN_CASES = ["evil-site", "null", "lookalike", "other-port", "localhost-name", "https-scheme"]


@pytest.mark.parametrize("origin_case", ORIGIN_CASES)
def test_a_hostile_origin_is_refused_and_runs_nothing(client_factory, route, origin_case):
    client = client_factory(route)
    origin = hostile_origins(client.gateway.base)[origin_case]
    log, mark, value = client.server.log, client.server.log.mark(), marker()
    reply = client.send(tools_call("echo", {"message": value}, 1201), extra=[("Origin", origin)])
    client.settle()
    assert not log.executed_marker(value, mark, timeout=0), f"ran for Origin {origin}"
    # The gateway refuses it: the server (the Python SDK checks Origin itself) never
    # has to.
    reached = [r for r in log.requests(mark) if ("origin", origin) in header_pairs(r)]
    assert reached == [], f"a request with Origin {origin} reached the server"
    assert reply.status == 403, (reply.status, reply.text())


@pytest.mark.parametrize("legacy_route", ["ts-legacy", "py-legacy"])
def test_a_hostile_origin_cannot_open_a_legacy_stream(adv_gateway, legacy_route):
    server = adv_gateway.server_of(legacy_route)
    mark = server.log.mark()
    try:
        stream = Legacy(adv_gateway.base, adv_gateway.prefix(legacy_route) + "/sse",
                        adv_gateway.tokens[legacy_route], extra=[("Origin", "http://evil.example")])
    except AssertionError:
        stream = None  # refused: no 200, or no endpoint event
    else:
        stream.close()
    opened = [r for r in server.log.requests(mark) if r["method"] == "GET"]
    assert stream is None and opened == [], "a stream was opened for a hostile Origin"


# --- 14: Cookie and duplicated Mcp-* headers ------------------------------------------

COOKIE_HEADERS = {
    "Cookie": [("Cookie", "sid={secret}")],
    "lowercase": [("cookie", "sid={secret}")],
    "two-headers": [("Cookie", "a=1"), ("Cookie", "sid={secret}")],
    "with-auth-looking-value": [("Cookie", "access_token={secret}; session=x")],
}


@pytest.mark.parametrize("headers", list(COOKIE_HEADERS.values()), ids=list(COOKIE_HEADERS))
def test_cookies_never_reach_the_server(client_factory, route, headers):
    client = client_factory(route)
    log, mark, value = client.server.log, client.server.log.mark(), marker()
    secret = f"cookie-secret-{value}"
    extra = [(name, template.format(secret=secret)) for name, template in headers]
    reply = client.send(tools_call("echo", {"message": value}, 1401), extra=extra)
    client.settle()
    # Stripping is the rule (the call goes through); refusing would also keep it out.
    assert secret not in log.text(mark), "the Cookie reached the server"
    for entry in log.requests(mark):
        assert "cookie" not in dict(header_pairs(entry)), entry
    assert log.executed_marker(value, mark, timeout=0), (reply.status, reply.text())


def test_cookies_never_reach_the_server_on_a_legacy_stream(adv_gateway):
    for legacy_route in ("ts-legacy", "py-legacy"):
        server = adv_gateway.server_of(legacy_route)
        mark, secret = server.log.mark(), f"cookie-secret-{marker()}"
        stream = Legacy(adv_gateway.base, adv_gateway.prefix(legacy_route) + "/sse",
                        adv_gateway.tokens[legacy_route], extra=[("Cookie", f"sid={secret}")])
        stream.close()
        gets = [r for r in server.log.requests(mark) if r["method"] == "GET"]
        assert gets, "the stream never reached the server"
        assert secret not in server.log.text(mark), legacy_route


DUPLICATED_MCP = {
    "Mcp-Name-twice": [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo"),
                       ("Mcp-Name", "admin-delete")],
    "Mcp-Name-case": [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo"),
                      ("mcp-name", "admin-delete")],
    "Mcp-Method-twice": [("Mcp-Method", "tools/call"), ("Mcp-Method", "tools/list")],
    "Mcp-Protocol-Version-twice": [("MCP-Protocol-Version", "2024-11-05")],
    "Mcp-Session-Id-twice": [("Mcp-Session-Id", "0d3c9a7e-not-mine")],
}


@pytest.mark.parametrize("headers", list(DUPLICATED_MCP.values()), ids=list(DUPLICATED_MCP))
def test_duplicated_mcp_headers_are_refused(client_factory, route, headers):
    client = client_factory(route)
    log, mark, value = client.server.log, client.server.log.mark(), marker()
    extra = list(headers)
    if client.legacy and not any(k.lower() in ("mcp-method", "mcp-name") for k, _ in extra):
        extra = extra + extra  # the legacy client sends no Mcp-* of its own: duplicate these
    reply = client.send(tools_call("echo", {"message": value}, 1402), extra=extra)
    received = [r for r in log.requests(mark) if "/barrier/" not in r["url"]]
    client.settle()
    assert log.forbidden_executions(mark) == []
    for entry in received:
        names = [k for k, _ in header_pairs(entry) if k.startswith("mcp-")]
        assert len(names) == len(set(names)), f"duplicated Mcp-* headers reached it: {entry}"
    # 400; two session ids may also be answered as an unknown session (404).
    assert reply.status == 400 or (reply.status == 404 and "session" in str(headers).lower()), (
        reply.status, reply.text())


# --- 13: pipelined requests -----------------------------------------------------------

def raw_request_bytes(client, message: dict) -> bytes:
    host, port = split_base(client.gateway.base)
    body = encode(message)
    lines = [f"POST {target_for(client)} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in client.session.headers()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


@pytest.mark.parametrize("route_name", ["ts-mcp", "py-mcp"])
def test_pipelined_requests_are_each_served_or_the_connection_is_closed(client_factory,
                                                                       route_name):
    """Two requests written at once on one connection: either both are forwarded and
    answered, or the first answer says `Connection: close` — never a keep-alive answer
    followed by silence while the second request is dropped."""
    client = client_factory(route_name)
    log, mark = client.server.log, client.server.log.mark()
    first, second = marker(), marker()
    data = (raw_request_bytes(client, tools_call("echo", {"message": first}, 1301))
            + raw_request_bytes(client, tools_call("echo", {"message": second}, 1302)))
    received = b""
    with socket.create_connection(split_base(client.gateway.base), timeout=STREAM_WAIT_S) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + 2 * STREAM_WAIT_S
        while time.monotonic() < deadline and received.count(b"HTTP/1.1 ") < 2:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += chunk
    assert log.executed_marker(first, mark), received
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    if b"connection: close" in head:
        return  # the gateway said it would not read on: dropping the second is honest
    assert log.executed_marker(second, mark, timeout=STREAM_WAIT_S), (
        f"the second request was dropped: {received!r}")
    assert received.count(b"HTTP/1.1 ") >= 2, received


# --- 13: conflicting framing ----------------------------------------------------------

def framed(client, headers: list[str], body: bytes) -> bytes:
    host, port = split_base(client.gateway.base)
    lines = [f"POST {target_for(client)} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in client.session.headers()]
    return "\r\n".join(lines + headers + ["", ""]).encode() + body


def chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)


FRAMINGS = {
    # Content-Length covers the allowed call; chunked framing covers the forbidden one.
    "cl-and-te": lambda allowed, forbidden: (
        [f"Content-Length: {len(allowed)}", "Transfer-Encoding: chunked"],
        allowed + chunked(forbidden)),
    "te-and-cl": lambda allowed, forbidden: (
        ["Transfer-Encoding: chunked", f"Content-Length: {len(chunked(allowed))}"],
        chunked(allowed) + forbidden),
    "te-identity-then-chunked": lambda allowed, forbidden: (
        ["Transfer-Encoding: identity", "Transfer-Encoding: chunked",
         f"Content-Length: {len(allowed)}"],
        allowed + chunked(forbidden)),
    "two-content-lengths": lambda allowed, forbidden: (
        [f"Content-Length: {len(allowed)}", f"Content-Length: {len(forbidden)}"],
        allowed + forbidden),
}


@pytest.mark.parametrize("framing", list(FRAMINGS.values()), ids=list(FRAMINGS))
@pytest.mark.parametrize("route_name", ["ts-mcp", "py-mcp"])
def test_conflicting_framing_never_runs_what_the_gateway_did_not_check(client_factory,
                                                                       route_name, framing):
    client = client_factory(route_name)
    log, mark = client.server.log, client.server.log.mark()
    allowed = encode(tools_call("echo", {"message": marker()}, 1311))
    forbidden = encode(tools_call("admin-delete", {"target": "everything"}, 1312))
    headers, body = framing(allowed, forbidden)
    received = b""
    with socket.create_connection(split_base(client.gateway.base), timeout=STREAM_WAIT_S) as sock:
        sock.sendall(framed(client, headers, body))
        deadline = time.monotonic() + STREAM_WAIT_S
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    barrier(client.server.base, log)
    assert log.forbidden_executions(mark) == [], f"smuggled: {received[:300]!r}"
    # RFC 9112 §6.1/§6.3: refuse (400), or act on Transfer-Encoding alone and close the
    # connection after answering; never a 5xx, never keep reading after such a request.
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"http/1.1 ") else 0
    closes = b"connection: close" in head
    assert status == 400 or (200 <= status < 300 and closes), received[:300]
