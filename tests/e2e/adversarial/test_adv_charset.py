"""Class 1 (issue 16): charset. The gateway reads the body as UTF-8 and sees `echo`;
Express's JSON parser (behind the TypeScript SDK's createMcpExpressApp) decodes the
declared charset — UTF-7 turns a string member into a second `"name":"admin-delete"`.
Rule: only no charset or UTF-8 is accepted; anything else is refused (415) before the
upstream; the Content-Type the upstream receives is one the gateway vouches for.
Every case asserts on what the server executed and received."""

from __future__ import annotations

import json

import pytest

from .wire import header_pairs, marker, tools_call

# The issue's payload: in UTF-7, `x` decodes to `","name":"admin-delete","y":"`.
ISSUE_UTF7 = "+ACIALAAiAG4AYQBtAGUAIgA6ACIAYQBkAG0AaQBuAC0AZABlAGwAZQB0AGUAIgAsACIAeQAiADoAIg-"
# The same smuggled members, encoded by iconv-lite's own UTF-7 encoder (only `"` shifted).
SHORT_UTF7 = "+ACI-,+ACI-name+ACI-:+ACI-admin-delete+ACI-,+ACI-y+ACI-:+ACI-"
# UTF-7 for IMAP (RFC 3501 modified UTF-7): `&` shifts; iconv-lite accepts `utf-7-imap`.
IMAP_UTF7 = "&ACI-,&ACI-name&ACI-:&ACI-admin-delete&ACI-,&ACI-y&ACI-:&ACI-"


def smuggling_body(hidden: str, request_id: int) -> bytes:
    """Valid UTF-8 JSON calling `echo`, with the forbidden call hidden in a string member."""
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {}, "x": hidden}}).encode()


def is_utf8_json(body: bytes) -> bool:
    try:
        json.loads(body.decode("utf-8"))
        return True
    except ValueError:
        return False


def forbidden_call(request_id: int) -> dict:
    return tools_call("admin-delete", {"target": "everything"}, request_id)


# (case id, Content-Type header lines, body). Every one is a charset other than UTF-8.
SMUGGLING_CASES = [
    ("utf-7-issue", ["application/json; charset=utf-7"], smuggling_body(ISSUE_UTF7, 101)),
    ("utf-7-short", ["application/json; charset=utf-7"], smuggling_body(SHORT_UTF7, 102)),
    ("utf-7-quoted-upper", ['application/json; charset="UTF-7"'], smuggling_body(ISSUE_UTF7, 103)),
    ("utf-7-no-space", ["application/json;charset=UTF-7"], smuggling_body(SHORT_UTF7, 104)),
    ("utf-7-param-case", ["application/json; Charset=Utf-7"], smuggling_body(ISSUE_UTF7, 105)),
    ("utf-7-imap", ["application/json; charset=utf-7-imap"], smuggling_body(IMAP_UTF7, 106)),
    ("charset-twice-7-last", ["application/json; charset=utf-8; charset=utf-7"],
     smuggling_body(ISSUE_UTF7, 107)),
    ("charset-twice-7-first", ["application/json; charset=utf-7; charset=utf-8"],
     smuggling_body(ISSUE_UTF7, 108)),
    ("two-content-types-7-first", ["application/json; charset=utf-7", "application/json"],
     smuggling_body(ISSUE_UTF7, 109)),
    ("two-content-types-7-last", ["application/json", "application/json; charset=utf-7"],
     smuggling_body(ISSUE_UTF7, 110)),
    ("utf-16le", ["application/json; charset=utf-16"],
     json.dumps(forbidden_call(111)).encode("utf-16-le")),
    ("utf-16be-bom", ["application/json; charset=utf-16be"],
     json.dumps(forbidden_call(112)).encode("utf-16")),
    ("utf-32", ["application/json; charset=utf-32"],
     json.dumps(forbidden_call(113)).encode("utf-32")),
    ("latin1", ["application/json; charset=iso-8859-1"],
     json.dumps(tools_call("echo", {"message": "caf\u00e9"}, 114),
                ensure_ascii=False).encode("latin-1")),
    ("latin1-ascii-body", ["application/json; charset=latin1"],
     smuggling_body(ISSUE_UTF7, 115)),
]


@pytest.mark.parametrize("content_types,body", [c[1:] for c in SMUGGLING_CASES],
                         ids=[c[0] for c in SMUGGLING_CASES])
def test_non_utf8_charset_never_reaches_the_upstream(client_factory, route, content_types, body):
    client = client_factory(route)
    log, mark = client.server.log, client.server.log.mark()
    reply = client.send(body, content_type=None,
                        extra=[("Content-Type", value) for value in content_types])
    # The upstream logs a request on arrival, before it answers: anything forwarded for
    # this POST is in the log by the time the gateway has answered.
    forwarded = [r for r in log.requests(mark) if r["method"] == "POST"]
    client.settle()
    assert log.forbidden_executions(mark) == [], "the upstream ran a forbidden tool"
    # The rule: refused with 415 and a JSON-RPC error, nothing forwarded. A body that is
    # not UTF-8 JSON at all may be refused as unparsable first, and two Content-Type
    # headers or two charsets as a malformed request: 400.
    ambiguous = len(content_types) > 1 or content_types[0].lower().count("charset") > 1
    allowed = {415} if is_utf8_json(body) and not ambiguous else {400, 415}
    assert reply.status in allowed, (reply.status, reply.text())
    assert reply.messages() and "error" in reply.messages()[0], reply.text()
    assert forwarded == [], forwarded


UTF8_SPELLINGS = [
    "application/json",
    "application/json; charset=utf-8",
    'application/json; charset="UTF-8"',
    "Application/JSON;charset=utf-8",
]


@pytest.mark.parametrize("content_type", UTF8_SPELLINGS)
def test_utf8_or_no_charset_is_served_with_a_content_type_the_upstream_reads_as_utf8(
        client_factory, route, content_type):
    client = client_factory(route)
    log, mark, value = client.server.log, client.server.log.mark(), marker()
    reply = client.send(tools_call("echo", {"message": value}, 120), content_type=content_type)
    answer = client.answer(120, reply)
    assert answer is not None and "result" in answer, (reply.status, reply.text())
    assert log.executed_marker(value, mark)
    posts = [r for r in log.requests(mark) if r["method"] == "POST"]
    assert posts, "the call never reached the upstream"
    for post in posts:
        types = [v for k, v in header_pairs(post) if k == "content-type"]
        assert len(types) == 1, types
        params = [p.strip().lower().replace('"', "") for p in types[0].split(";")[1:]]
        assert types[0].split(";")[0].strip().lower() == "application/json", types
        assert all(p == "charset=utf-8" for p in params), types
