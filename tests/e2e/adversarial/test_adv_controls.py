"""Positive controls: through the gateway, on every route (TypeScript and Python SDK
servers, Streamable HTTP and legacy SSE), what the policy allows does run and the lists
are filtered; directly, the servers do hold and run the forbidden tools. Without these, a
broken peer could make every refusal case below pass vacuously."""

from __future__ import annotations

import pytest

from .wire import FORBIDDEN_NAMES, Legacy, Streamable, barrier, marker, tools_call


def listed_names(answer: dict, key: str, field: str = "name") -> set[str]:
    assert answer is not None and "result" in answer, answer
    return {item[field] for item in answer["result"][key]}


def test_allowed_tool_executes_through_the_gateway(client_factory, route):
    client = client_factory(route)
    mark, value = client.server.log.mark(), marker()
    reply = client.send(tools_call("echo", {"message": value}, 11))
    answer = client.answer(11, reply)
    assert answer is not None and "result" in answer, (reply.status, reply.text())
    assert client.server.log.executed_marker(value, mark)
    (run,) = [e for e in client.server.log.executions(mark) if value in str(e["args"])]
    assert run["tool"] == "echo"
    assert run["transport"] == ("sse" if client.legacy else "streamable")


@pytest.mark.parametrize("route_name", ["ts-mcp", "py-mcp"])
def test_lists_through_the_gateway_are_filtered(client_factory, route_name):
    # (The legacy transport's lists travel on its GET stream: test_adv_streams.py.)
    client = client_factory(route_name)
    tools = client.answer(21, client.send({"jsonrpc": "2.0", "id": 21, "method": "tools/list"}))
    assert listed_names(tools, "tools") == {"echo"}
    prompts = client.answer(22, client.send({"jsonrpc": "2.0", "id": 22, "method": "prompts/list"}))
    assert listed_names(prompts, "prompts") == {"greeting"}
    resources = client.answer(23, client.send({"jsonrpc": "2.0", "id": 23,
                                               "method": "resources/list"}))
    assert listed_names(resources, "resources", "uri") == {"test://public/info"}


def test_allowed_prompt_and_resource_run_forbidden_ones_do_not(client_factory, route):
    client = client_factory(route)
    log, mark = client.server.log, client.server.log.mark()
    ok_prompt = client.answer(31, client.send({"jsonrpc": "2.0", "id": 31, "method": "prompts/get",
                                               "params": {"name": "greeting"}}))
    ok_resource = client.answer(32, client.send({"jsonrpc": "2.0", "id": 32,
                                                 "method": "resources/read",
                                                 "params": {"uri": "test://public/info"}}))
    assert ok_prompt and "result" in ok_prompt, ok_prompt
    assert ok_resource and "result" in ok_resource, ok_resource
    client.send({"jsonrpc": "2.0", "id": 33, "method": "prompts/get",
                 "params": {"name": "forbidden-prompt"}})
    client.send({"jsonrpc": "2.0", "id": 34, "method": "resources/read",
                 "params": {"uri": "test://secret/key"}})
    client.send(tools_call("admin-delete", {"target": "everything"}, 35))
    client.settle()
    assert log.forbidden_executions(mark) == []
    assert {e[e["kind"]] for e in log.executions(mark)} >= {"greeting", "test://public/info"}


@pytest.mark.parametrize("server_name", ["ts", "py"])
def test_directly_the_servers_list_and_run_the_forbidden_tool(adv_gateway, server_name):
    server = adv_gateway.servers[server_name]
    session = Streamable(server.base, "/mcp", None).initialize()
    tools = session.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).messages()
    names = {t["name"] for t in tools[0]["result"]["tools"]}
    assert names >= {"echo", "admin-delete", "get-secret"}
    mark = server.log.mark()
    session.call("admin-delete", {"target": "control"}, 3)
    barrier(server.base, server.log)
    assert [e["tool"] for e in server.log.executions(mark)] == ["admin-delete"]
    legacy = Legacy(server.base, "/sse", None).initialize()
    try:
        listed = legacy.post({"jsonrpc": "2.0", "id": 4, "method": "tools/list"})
        assert listed.status == 202
        names = {t["name"] for t in legacy.answer(4)["result"]["tools"]}
        assert set(FORBIDDEN_NAMES[:2]) <= names
    finally:
        legacy.close()
