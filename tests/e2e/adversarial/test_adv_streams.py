"""Classes 4 and 5 (issue 16): every server-to-client stream is filtered, and the filter
fails closed on unusual answers. Both servers store every event (an event store): a GET
with `Last-Event-ID` replays a stored `tools/list` answer with every tool in it. The
legacy transport carries list answers on its GET stream. Request ids the servers echo
back in another form (a string id, `1.0` answered as `1`, an integer beyond 2^53 that
JavaScript rounds) must not let an answer escape filtering.
Rule: filter by the answer's shape wherever it appears; what cannot be filtered with
certainty never reaches the client. Asserted on what the CLIENT received: no forbidden
tool, prompt or resource name, ever."""

from __future__ import annotations

import pytest

from .wire import FORBIDDEN_NAMES, parse_sse

LISTS = {
    "tools/list": ("tools", "name", {"echo"}),
    "prompts/list": ("prompts", "name", {"greeting"}),
    "resources/list": ("resources", "uri", {"test://public/info"}),
}


def leaked(text: str) -> list[str]:
    return [name for name in FORBIDDEN_NAMES if name in text]


@pytest.mark.parametrize("method", list(LISTS))
@pytest.mark.parametrize("header", ["Last-Event-ID", "last-event-id"])
@pytest.mark.parametrize("route_name", ["ts-mcp", "py-mcp"])
def test_resumed_stream_replaying_a_list_answer_is_filtered(adv_gateway, client_factory, method,
                                                            header, route_name):
    client = client_factory(route_name)
    log = client.server.log
    reply = client.send({"jsonrpc": "2.0", "id": 41, "method": method})
    assert reply.status == 200, (reply.status, reply.text())
    assert leaked(reply.text()) == [], "the POST answer itself was not filtered"
    primed = [event.id for event in parse_sse(reply.body) if event.id]
    assert primed, f"no event ids: is the event store on? {reply.text()!r}"
    mark = log.mark()
    stream = client.session.stream(extra=[(header, primed[0])])
    try:
        stream.wait(lambda: stream.message_with_id(41) is not None, timeout=5)
        received = stream.raw_text()
    finally:
        stream.close()
    assert leaked(received) == [], f"the replayed answer leaked: {received!r}"
    resumed = [r for r in log.requests(mark) if r["method"] == "GET"]
    answer = stream.message_with_id(41)
    if stream.status == 200 and answer is not None and "result" in answer:
        key, field, allowed = LISTS[method]
        assert {item[field] for item in answer["result"][key]} <= allowed
    else:
        # Refusing the resumption is fine; the server must then not have been asked.
        assert stream.status != 200 or not resumed or answer is None, received


@pytest.mark.parametrize("legacy_route", ["ts-legacy", "py-legacy"])
@pytest.mark.parametrize("method", list(LISTS))
def test_legacy_stream_list_answers_are_filtered(client_factory, legacy_route, method):
    client = client_factory(legacy_route)
    reply = client.send({"jsonrpc": "2.0", "id": 42, "method": method})
    assert reply.status == 202, (reply.status, reply.text())
    answer = client.answer(42, reply)
    client.settle()
    assert leaked(client.received(reply)) == []
    assert answer is not None, "no answer came"
    if "result" in answer:
        key, field, allowed = LISTS[method]
        assert {item[field] for item in answer["result"][key]} == allowed


# Raw request ids: as the servers read them and echo them back, possibly in another form.
ODD_IDS = {
    "string-1": '"1"',
    "string-01": '"01"',
    "string-word": '"list-me"',
    "zero": "0",
    "negative": "-1",
    "float-1.0": "1.0",
    "exponent": "1e0",
    "beyond-2^53": "9007199254740993",
    "empty-string": '""',
}


@pytest.mark.parametrize("raw_id", list(ODD_IDS.values()), ids=list(ODD_IDS))
def test_list_answers_to_unusual_request_ids_are_filtered(client_factory, route, raw_id):
    client = client_factory(route)
    body = ('{"jsonrpc":"2.0","id":%s,"method":"tools/list"}' % raw_id).encode()
    reply = client.send(body)
    client.settle()
    assert leaked(client.received(reply)) == [], client.received(reply)


BATCHES = {
    "ids-1-forms": (b'[{"jsonrpc":"2.0","id":"1","method":"tools/list"},'
                    b'{"jsonrpc":"2.0","id":1,"method":"prompts/list"},'
                    b'{"jsonrpc":"2.0","id":1.0,"method":"resources/list"}]'),
    "same-id-two-kinds": (b'[{"jsonrpc":"2.0","id":1,"method":"prompts/list"},'
                          b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}]'),
    "same-id-twice": (b'[{"jsonrpc":"2.0","id":7,"method":"tools/list"},'
                      b'{"jsonrpc":"2.0","id":7,"method":"tools/list"}]'),
    "list-and-ping-same-id": (b'[{"jsonrpc":"2.0","id":3,"method":"ping"},'
                              b'{"jsonrpc":"2.0","id":3,"method":"tools/list"}]'),
}


@pytest.mark.parametrize("body", list(BATCHES.values()), ids=list(BATCHES))
@pytest.mark.parametrize("route_name", ["ts-mcp", "py-mcp"])
def test_list_answers_in_a_batch_are_filtered(adv_gateway, client_factory, route_name, body):
    client = client_factory(route_name)
    reply = client.send(body)
    assert leaked(reply.text()) == [], reply.text()
