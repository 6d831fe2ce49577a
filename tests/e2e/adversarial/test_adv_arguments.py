"""Argument rules (issue 20): on the `*-args` routes, `echo` may run only with a `target`
under /srv/data (and at most a short `message`), and `search` only with its nested
`options.depth` a number from 0 to 3 (rules on JSON pointers). Each case tries to smuggle a forbidden
target past that rule in a way some JSON reader would accept: a duplicate key (one
reader keeps the first, another the last), an escaped spelling of the key, a key
differing in case, dot segments, a nested duplicate, an `arguments` member spelled twice.

Assertions are made on the canonical SDK servers' own logs: the forbidden target never
ran (no execution carries it) and never even arrived (no body the server read carries
it). Controls: an allowed target runs through the gateway on both servers, and sent
directly to each server, the duplicate-key body does run with the forbidden target (so
the attack is real, and which duplicate each SDK keeps is recorded)."""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest

from .wire import Streamable, barrier, marker

ARGS_ROUTES = ("ts-args", "py-args")


def call_body(request_id: int, arguments: str) -> bytes:
    return ('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":%s}}'
            % (request_id, arguments)).encode()


def smuggling_cases(bad: str) -> dict[str, bytes]:
    """Bodies that carry the forbidden target `bad` beside or instead of an allowed one."""
    good = "/srv/data/ok"
    return {
        "outside-the-glob": call_body(1, json.dumps({"target": bad})),
        "duplicate-last-wins": call_body(2, '{"target":"%s","target":"%s"}' % (good, bad)),
        "duplicate-first-wins": call_body(3, '{"target":"%s","target":"%s"}' % (bad, good)),
        "escaped-key": call_body(4, '{"target":"%s","t\\u0061rget":"%s"}' % (good, bad)),
        "escaped-key-first": call_body(5, '{"\\u0074arget":"%s","target":"%s"}' % (bad, good)),
        "case-variant-key": call_body(6, '{"target":"%s","TARGET":"%s"}' % (good, bad)),
        "dot-segments": call_body(7, json.dumps({"target": f"/srv/data/../..{bad}"})),
        "encoded-dot-segments": call_body(8, json.dumps({"target": f"/srv/data/%2e%2e/%2e%2e{bad}"})),
        "nested-duplicate": call_body(
            9, '{"target":"%s","message":{"x":"%s","x":"%s"}}' % (good, good, bad)),
        "arguments-twice": (
            '{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{"target":"%s"},"arguments":{"target":"%s"}}}' % (good, bad)).encode(),
        "arguments-case-variant": (
            '{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{"target":"%s"},"Arguments":{"target":"%s"}}}' % (good, bad)).encode(),
        "additional-argument": call_body(12, json.dumps({"target": good, "extra": bad})),
        "wrong-type": call_body(13, json.dumps({"target": [bad]})),
        "batch": ("[%s,%s]" % (call_body(14, json.dumps({"target": good})).decode(),
                               call_body(15, json.dumps({"target": bad})).decode())).encode(),
    }


def received_bodies(log, since: int) -> str:
    return "\n".join(base64.b64decode(e["body_b64"]).decode("utf-8", "replace")
                     for e in log.bodies(since))


@pytest.mark.parametrize("route", ARGS_ROUTES)
def test_an_allowed_target_runs(client_factory, route):
    client = client_factory(route)
    log, mark = client.server.log, client.server.log.mark()
    target = f"/srv/data/{marker()}"
    reply = client.send(call_body(1, json.dumps({"target": target, "message": "hi"})))
    assert reply.status == 200, (reply.status, reply.text())
    assert log.executed_marker(target, mark), "the allowed call did not run"
    ran = [e for e in log.executions(mark, "echo") if e["args"].get("target") == target]
    assert len(ran) == 1, ran


@pytest.mark.parametrize("route", ARGS_ROUTES)
@pytest.mark.parametrize("case", list(smuggling_cases("/etc/x")))
def test_a_forbidden_target_never_reaches_the_server(client_factory, route, case):
    client = client_factory(route)
    log, mark = client.server.log, client.server.log.mark()
    bad = f"/etc/{marker()}"
    reply = client.send(smuggling_cases(bad)[case])
    assert reply.status in (400, 403), (case, reply.status, reply.text())
    assert bad not in reply.text(), "the refusal echoes the value"
    barrier(client.server.base, log)
    assert all(bad not in json.dumps(e.get("args", {})) for e in log.executions(mark)), (
        "the server ran the forbidden target")
    assert bad not in received_bodies(log, mark), "the forbidden target reached the server"
    posts = [e for e in log.requests(mark) if e.get("method") == "POST"]
    assert posts == [], "the refused call reached the server"


@pytest.mark.parametrize("server_name", ["ts", "py"])
def test_directly_the_duplicate_key_runs_the_forbidden_target(adv_gateway, server_name):
    """The control: without the gateway, a duplicate `target` runs one of its values on
    the server; both SDKs parse JSON keeping the last duplicate."""
    server = adv_gateway.servers[server_name]
    session = Streamable(server.base, "/mcp", None).initialize()
    mark = server.log.mark()
    bad = f"/etc/{marker()}"
    reply = session.post(call_body(1, '{"target":"/srv/data/ok","target":"%s"}' % bad))
    assert reply.status == 200, (reply.status, reply.text())
    assert server.log.executed_marker(bad, mark), "the last duplicate did not run"


def shadow_denials(admin: str, route: str) -> float:
    """drawbridge_policy_shadow_decisions_total for the shadowed `message` rule, denials."""
    with urllib.request.urlopen(f"{admin}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    series = ('drawbridge_policy_shadow_decisions_total{decision="deny",route="%s",'
              'rule="tools:echo:arguments:/message"}' % route)
    for line in text.splitlines():
        if line.startswith(series):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("route", ARGS_ROUTES)
def test_a_shadow_rule_is_counted_and_not_enforced(adv_gateway, client_factory, route):
    """`message` must be lower case, in shadow mode: a call breaking it runs on the
    server, and the would-be denial is counted."""
    client = client_factory(route)
    log, mark = client.server.log, client.server.log.mark()
    before = shadow_denials(adv_gateway.admin, route)
    loud = f"LOUD-{marker()}"
    reply = client.send(call_body(1, json.dumps({"target": "/srv/data/a", "message": loud})))
    assert reply.status == 200, (reply.status, reply.text())
    assert log.executed_marker(loud, mark), "a shadow rule refused the call"
    assert shadow_denials(adv_gateway.admin, route) == before + 1


def search_body(request_id: int, arguments: str) -> bytes:
    return ('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"search","arguments":%s}}'
            % (request_id, arguments)).encode()


def nested_cases(query: str) -> dict[str, bytes]:
    """Calls of `search` whose nested `options` break its rules (/options/depth at most 3,
    a number; /options/mode fast or deep), each in a way some reader might let pass."""
    q = json.dumps(query)
    return {
        "too-deep": search_body(1, '{"query":%s,"options":{"depth":9}}' % q),
        "depth-as-string": search_body(2, '{"query":%s,"options":{"depth":"2"}}' % q),
        "depth-as-array": search_body(3, '{"query":%s,"options":{"depth":[2]}}' % q),
        "options-not-an-object": search_body(4, '{"query":%s,"options":[{"depth":2}]}' % q),
        "depth-missing": search_body(5, '{"query":%s,"options":{"mode":"fast"}}' % q),
        "nested-duplicate-last": search_body(6, '{"query":%s,"options":{"depth":1,"depth":9}}' % q),
        "nested-duplicate-first": search_body(7, '{"query":%s,"options":{"depth":9,"depth":1}}' % q),
        "nested-escaped-key": search_body(8, '{"query":%s,"options":{"depth":1,"d\\u0065pth":9}}' % q),
        "options-twice": search_body(
            9, '{"query":%s,"options":{"depth":1},"options":{"depth":9}}' % q),
        "mode-not-listed": search_body(10, '{"query":%s,"options":{"depth":1,"mode":"slow"}}' % q),
        "depth-huge-number": search_body(11, '{"query":%s,"options":{"depth":1e400}}' % q),
    }


@pytest.mark.parametrize("route", ARGS_ROUTES)
def test_nested_arguments_within_their_rules_run(client_factory, route):
    client = client_factory(route)
    log, mark = client.server.log, client.server.log.mark()
    query = f"ok-{marker()}"
    reply = client.send(search_body(1, json.dumps({"query": query,
                                                   "options": {"depth": 2, "mode": "deep"}})))
    assert reply.status == 200, (reply.status, reply.text())
    assert log.executed_marker(query, mark), "the allowed search did not run"
    (run,) = [e for e in log.executions(mark, "search") if e["args"].get("query") == query]
    assert run["args"]["options"]["depth"] == 2, run


@pytest.mark.parametrize("route", ARGS_ROUTES)
@pytest.mark.parametrize("case", list(nested_cases("x")))
def test_a_nested_argument_breaking_its_rule_never_runs(client_factory, route, case):
    """Asserted on what the server executed and received, not on the gateway's status."""
    client = client_factory(route)
    log, mark = client.server.log, client.server.log.mark()
    query = f"nested-{marker()}"
    reply = client.send(nested_cases(query)[case])
    assert reply.status in (400, 403), (case, reply.status, reply.text())
    barrier(client.server.base, log)
    assert not log.executed_marker(query, mark, timeout=0), f"{case}: the server ran it"
    assert query not in received_bodies(log, mark), f"{case}: the call reached the server"


@pytest.mark.parametrize("server_name", ["ts", "py"])
def test_directly_a_nested_duplicate_runs_the_forbidden_depth(adv_gateway, server_name):
    """The control: without the gateway, `{"depth":1,"depth":9}` runs with depth 9 on the
    server (both SDKs keep the last duplicate), so the nested cases above are attacks."""
    server = adv_gateway.servers[server_name]
    session = Streamable(server.base, "/mcp", None).initialize()
    mark = server.log.mark()
    query = f"direct-{marker()}"
    reply = session.post(nested_cases(query)["nested-duplicate-last"])
    assert reply.status == 200, (reply.status, reply.text())
    assert server.log.executed_marker(query, mark), "the nested duplicate did not run"
    (run,) = [e for e in server.log.executions(mark, "search") if e["args"].get("query") == query]
    assert run["args"]["options"]["depth"] == 9, run
