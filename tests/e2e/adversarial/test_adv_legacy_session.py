"""Class 3 (issue 16): the legacy transport's session parameter. The TypeScript SDK's
example reads `sessionId` from Express's query (names percent-decoded); the Python SDK
reads `session_id` from Starlette's (names decoded, the LAST of repeated names wins).
A gateway that checks only the literal spelling it knows, or only the first occurrence,
lets a caller post into a session it does not own (here: a victim session opened
directly on the server, standing for an id that leaked or was guessed).
Rule: one query parser decoding names as upstream frameworks do; a second session
parameter, or an encoded spelling of one, is refused; a session id the client sees is
never the upstream's raw id, even when the `endpoint` event cannot be mapped into the
route (a path outside the upstream base path). Asserted on the servers' execution logs: nothing runs in
the victim's session."""

from __future__ import annotations

import re
import urllib.parse
from typing import Iterator

import pytest

from .wire import EventStream, Legacy, encode, marker, request, tools_call

# {sealed}: the caller's own sealed id (from the gateway's endpoint event);
# {raw}: the victim's raw upstream id.
TS_QUERIES = {
    "encoded-I": "session%49d={raw}",
    "encoded-d-lower": "sessionI%64={raw}",
    "encoded-first-letter": "%73essionId={raw}",
    "raw-alone": "sessionId={raw}",
    "own-then-raw": "sessionId={sealed}&sessionId={raw}",
    "raw-then-own": "sessionId={raw}&sessionId={sealed}",
    "own-then-encoded-raw": "sessionId={sealed}&session%49d={raw}",
    "semicolon": "sessionId={sealed};sessionId={raw}",
    "array-syntax": "sessionId={sealed}&sessionId[]={raw}",
    "other-spelling-too": "sessionId={raw}&session_id={sealed}",
}
PY_QUERIES = {
    "encoded-underscore": "session%5Fid={raw}",
    "encoded-underscore-lower": "session%5fid={raw}",
    "encoded-first-letter": "%73ession_id={raw}",
    "raw-alone": "session_id={raw}",
    "own-then-raw": "session_id={sealed}&session_id={raw}",
    "own-then-encoded-raw": "session_id={sealed}&session%5Fid={raw}",
    "semicolon": "session_id={sealed};session_id={raw}",
    "other-spelling-checked": "sessionId={sealed}&session_id={raw}",
    "plus-in-name": "session_id={sealed}&session_id+={raw}",
}
CASES = ([("ts-legacy", name, query) for name, query in TS_QUERIES.items()]
         + [("py-legacy", name, query) for name, query in PY_QUERIES.items()])


@pytest.fixture
def victim(adv_gateway, request) -> Iterator[tuple[Legacy, str]]:
    """A legacy session opened directly on the server of the case's route: (session, raw id)."""
    route = request.node.callspec.params["legacy_route"]
    server = adv_gateway.server_of(route)
    session = Legacy(server.base, "/sse", None).initialize()
    try:
        yield session, session.session_param()[1]
    finally:
        session.close()


@pytest.mark.parametrize("legacy_route,query", [(r, q) for r, _, q in CASES],
                         ids=[f"{r}-{n}" for r, n, _ in CASES])
def test_nothing_runs_in_a_session_the_caller_does_not_own(client_factory, victim, legacy_route,
                                                           query):
    victim_session, raw = victim
    client = client_factory(legacy_route)
    log = client.server.log
    _, sealed = client.session.session_param()
    assert sealed != raw
    target = client.session.endpoint_path() + "?" + query.format(
        sealed=urllib.parse.quote(sealed, safe=""), raw=raw)
    mark, value = log.mark(), marker()
    reply = client.send(tools_call("echo", {"message": value}, 301), target=target)
    client.settle()
    hijacked = [e for e in log.executions(mark) if e.get("session") == raw]
    assert hijacked == [], f"ran in the victim's session (gateway answered {reply.status})"
    assert value not in victim_session.stream.raw_text()


@pytest.mark.parametrize("legacy_route", ["ts-legacy", "py-legacy"])
def test_the_endpoint_event_never_carries_the_raw_session_id(client_factory, legacy_route):
    client = client_factory(legacy_route)
    log, mark, value = client.server.log, client.server.log.mark(), marker()
    reply = client.send(tools_call("echo", {"message": value}, 302))
    assert reply.status == 202, (reply.status, reply.text())
    assert log.executed_marker(value, mark)
    (run,) = [e for e in log.executions(mark) if value in str(e["args"])]
    raw = run["session"]
    assert raw and raw not in client.session.endpoint, (raw, client.session.endpoint)
    assert raw not in client.session.stream.raw_text()


def live_raw_ids(server_base: str, legacy_path: str, text: str) -> list[str]:
    """The values in `text` shaped like an SDK session id (a UUID, or 32 hex digits) that
    the server accepts as a live legacy session: a raw id that escaped."""
    live = []
    for value in set(re.findall(r"[0-9a-fA-F][0-9a-fA-F-]{30,34}[0-9a-fA-F]", text)):
        name = "sessionId" if legacy_path == "/messages" else "session_id"
        probe = request(server_base, "POST", f"{legacy_path}?{name}={value}",
                        [("Content-Type", "application/json")],
                        encode({"jsonrpc": "2.0", "id": "probe", "method": "ping"}))
        if probe.status == 202:
            live.append(value)
    return live


@pytest.mark.parametrize("outside_route", ["ts-outside", "py-outside"])
def test_an_endpoint_outside_the_base_path_never_reaches_the_client_raw(adv_gateway,
                                                                        outside_route):
    """The server announces `/messages…` while the route's upstream base is `/outside/`:
    the gateway cannot map the endpoint, so the stream must end with an error — never
    pass the raw id on."""
    server = adv_gateway.server_of(outside_route)
    legacy_path = "/messages" if server.name == "ts" else "/messages/"
    has_endpoint = lambda stream: any(e.event == "endpoint" for e in stream.events)  # noqa: E731

    # Control: directly, the stream carries a raw id and the detector finds it live.
    direct = EventStream(server.base, "/outside/sse", [("Accept", "text/event-stream")])
    try:
        assert direct.wait(lambda: has_endpoint(direct)), direct.raw_text()
        assert live_raw_ids(server.base, legacy_path, direct.raw_text()), direct.raw_text()
    finally:
        direct.close()

    token = adv_gateway.tokens[outside_route]
    stream = EventStream(adv_gateway.base, adv_gateway.prefix(outside_route) + "/sse",
                         [("Accept", "text/event-stream"), ("Authorization", f"Bearer {token}")])
    try:
        stream.wait(lambda: has_endpoint(stream), timeout=5)
        # Probed while the stream is open: the server drops the session when it closes.
        leaked = live_raw_ids(server.base, legacy_path, stream.raw_text())
    finally:
        stream.close()
    assert leaked == [], f"the client received the raw session id: {stream.raw_text()!r}"
