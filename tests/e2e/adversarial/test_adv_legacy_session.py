"""Class 3 (issue 16): the legacy transport's session parameter. The TypeScript SDK's
example reads `sessionId` from Express's query (names percent-decoded); the Python SDK
reads `session_id` from Starlette's (names decoded, the LAST of repeated names wins).
A gateway that checks only the literal spelling it knows, or only the first occurrence,
lets a caller post into a session it does not own (here: a victim session opened
directly on the server, standing for an id that leaked or was guessed).
Rule: one query parser decoding names as upstream frameworks do; a second session
parameter, or an encoded spelling of one, is refused; a session id the client sees is
never the upstream's raw id. Asserted on the servers' execution logs: nothing runs in
the victim's session."""

from __future__ import annotations

import urllib.parse
from typing import Iterator

import pytest

from .wire import Legacy, marker, tools_call

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
