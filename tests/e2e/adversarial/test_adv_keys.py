"""Class 2 (issue 16): key spelling. `{"name":"echo","Name":"admin-delete"}` is judged by
the gateway on `name`; an upstream that matches keys case-insensitively (Go's
encoding/json: Unicode simple folding, so `ſ` is `s`, and the last match wins) reads the
other. Rule: the gateway refuses members colliding case-insensitively with the ones it
decides on, or forwards its own canonical re-serialisation.

The Python server logs every body it receives, so the assertion is made from the
upstream's side: for each body that reached it, an exact reader and a Go-like reader
must take the same decision (method, tool/prompt name, resource URI). And, on every
route, nothing forbidden ran."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

FORBIDDEN_SPELLINGS = {
    "Name": '{"jsonrpc":"2.0","id":201,"method":"tools/call","params":{"name":"echo","arguments":{},"Name":"admin-delete"}}',
    "NAME": '{"jsonrpc":"2.0","id":202,"method":"tools/call","params":{"name":"echo","arguments":{},"NAME":"admin-delete"}}',
    "nAmE-first": '{"jsonrpc":"2.0","id":203,"method":"tools/call","params":{"nAmE":"admin-delete","name":"echo","arguments":{}}}',
    "escaped-duplicate": '{"jsonrpc":"2.0","id":204,"method":"tools/call","params":{"name":"echo","nam\\u0065":"admin-delete","arguments":{}}}',
    "escaped-upper": '{"jsonrpc":"2.0","id":205,"method":"tools/call","params":{"name":"echo","\\u004eame":"admin-delete","arguments":{}}}',
    "Params": '{"jsonrpc":"2.0","id":206,"method":"tools/call","params":{"name":"echo","arguments":{}},"Params":{"name":"admin-delete","arguments":{}}}',
    "long-s-raw": '{"jsonrpc":"2.0","id":207,"method":"tools/call","params":{"name":"echo","arguments":{}},"param\u017f":{"name":"admin-delete","arguments":{}}}',
    "long-s-escaped": '{"jsonrpc":"2.0","id":208,"method":"tools/call","params":{"name":"echo","arguments":{}},"param\\u017f":{"name":"admin-delete","arguments":{}}}',
    "Method": '{"jsonrpc":"2.0","id":209,"method":"tools/list","Method":"tools/call","params":{"name":"admin-delete","arguments":{}}}',
    "METHOD-long-s-args": '{"jsonrpc":"2.0","id":210,"method":"tools/call","params":{"name":"echo","argument\u017f":{"x":1},"arguments":{}},"METHOD":"tools/call"}',
    "prompt-Name": '{"jsonrpc":"2.0","id":211,"method":"prompts/get","params":{"name":"greeting","Name":"forbidden-prompt"}}',
    "resource-URI": '{"jsonrpc":"2.0","id":212,"method":"resources/read","params":{"uri":"test://public/info","URI":"test://secret/key"}}',
    "resource-Uri-escaped": '{"jsonrpc":"2.0","id":213,"method":"resources/read","params":{"uri":"test://public/info","\\u0055ri":"test://secret/key"}}',
    "batch-member-Name": '[{"jsonrpc":"2.0","id":214,"method":"tools/call","params":{"name":"echo","arguments":{},"Name":"admin-delete"}}]',
}


def go_like(value: Any) -> Any:
    """What a case-insensitive decoder reads: keys folded, the last of equal keys wins."""
    if isinstance(value, dict):
        folded: dict[str, Any] = {}
        for key, item in value.items():
            folded[key.casefold()] = go_like(item)
        return folded
    if isinstance(value, list):
        return [go_like(item) for item in value]
    return value


def pairs_last_wins(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, item in pairs:
        out[key] = item
    return out


def fold_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, item in pairs:
        out[key.casefold()] = item
    return out


def decisions(body: bytes, folded: bool) -> list[tuple]:
    """(method, name, uri) of each message, read exactly or the Go-like way."""
    hook = fold_pairs if folded else pairs_last_wins
    value = json.loads(body, object_pairs_hook=hook)
    messages = value if isinstance(value, list) else [value]
    out = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        out.append((message.get("method"), params.get("name"), params.get("uri")))
    return out


@pytest.mark.parametrize("body", list(FORBIDDEN_SPELLINGS.values()), ids=list(FORBIDDEN_SPELLINGS))
def test_case_insensitive_key_collisions_never_change_the_decision(client_factory, route, body):
    client = client_factory(route)
    log, mark = client.server.log, client.server.log.mark()
    reply = client.send(body.encode())
    client.settle()
    assert log.forbidden_executions(mark) == [], "the upstream ran a forbidden tool"
    for received in log.bodies(mark):
        raw = base64.b64decode(received["body_b64"])
        assert decisions(raw, folded=False) == decisions(raw, folded=True), (
            "forwarded a body whose case-insensitive reading differs", raw, reply.status)
