"""A real Prometheus server scraping drawbridge, and every query deploy/ ships evaluated on it.

This module owns what traffic is driven and what is asserted about its scraped metrics.
Through a gateway of its own (conftest.metrics_gateway: protected routes with token
exchange, a public route, a route whose upstream is down) it sends real MCP traffic and
refusals of every kind the stack can produce here: the Python SDK signing in from a bare
URL and stepping up, tools/list, allowed and refused tools/call, token exchange (issued
and refused), a forged token, a token for another route, a session id presented by
another user and one sealed with an unknown key, a path no route matches, and an
upstream that refuses connections. Prometheus (conftest.prometheus, Debian's binary)
scrapes the admin listener every second and evaluates deploy/prometheus/rules.yml. Then:

- `drawbridge_requests_total` in Prometheus equals, per route, method and status, the
  requests the clients saw answered;
- every PromQL expression of deploy/grafana/drawbridge.json and every alert expression of
  rules.yml evaluates successfully; every vector selector in them returns series unless
  it is listed in NOT_PRODUCED with the reason, and then its metric is still declared in
  drawbridge's /metrics (# TYPE; or, for a metric registered only where its feature is
  configured, named in the source) and its label values exist in the source; every
  `by (...)` label exists on the series it groups; every expression (and every operand
  of an alert's `and`/`unless`) whose selectors all return series returns series itself;
- Prometheus loaded every alert of rules.yml and evaluates each with health "ok".
"""

from __future__ import annotations

import calendar
import json
import re
import time
import urllib.parse
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import ALERT_RULES, REPO_ROOT, http_get
from headless_oauth import OAuthClient

DASHBOARD = REPO_ROOT / "deploy/grafana/drawbridge.json"
SCENARIO_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 10.0
SCRAPE_WAIT_S = 30.0
# Grafana's variables as plain values. `$route` is used as a regex (`=~"$route"`): "All"
# is `.*` (the variable's allValue), a multi-selection is Grafana's `(a|b)`, and a single
# route is its name. The rate interval must hold at least two scrapes (here 1s apart).
# With one route selected, panels about what that route does not do (token exchange on
# a route without it) are empty by nature: those are reported, not failed.
INTERVALS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
DASHBOARD_PASSES = [  # (variables, every panel must return series)
    ({"route": ".*", **INTERVALS}, True),
    ({"route": "(everything|whoami|dead)", **INTERVALS}, True),
    ({"route": "everything", **INTERVALS}, False),
]

# Vector selectors that the traffic of this module cannot produce, and why. A selector
# in a panel or an alert that returns no series and is not listed here fails the test;
# so does one listed here that does return series (the list must stay true).
NOT_PRODUCED = {
    'drawbridge_auth_failures_total{reason="issuer_unavailable"}':
        "the authorization server stays reachable",
    'drawbridge_token_exchange_total{result=~"transport_error|invalid_response"}':
        "the token endpoint stays reachable and answers well-formed responses",
    "drawbridge_tls_certificate_expiry_timestamp_seconds":
        "the MCP listener of this module is plain HTTP (the TLS listener: test_tls.py)",
}

# Metrics registered only where their feature is configured (a gauge read as a deadline
# must not exist at 0 where there is none): not declared in this module's /metrics, so
# their name is checked against the source instead.
REGISTERED_ONLY_WHEN_CONFIGURED = {
    "drawbridge_tls_certificate_expiry_timestamp_seconds",  # listener `tls`
}


def run(scenario, *args):
    """Run an async scenario to completion, bounded by SCENARIO_TIMEOUT_S."""

    async def bounded():
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            return await scenario(*args)

    return anyio.run(bounded)


# --- traffic ---------------------------------------------------------------------------

@dataclass
class Recorder:
    """(method, path, status) of every answer the gateway gave the clients."""

    base_url: str
    answers: list[tuple[str, str, int]] = field(default_factory=list)
    session_ids: dict[str, str] = field(default_factory=dict)  # path -> last one handed out

    async def hook(self, response: httpx2.Response) -> None:
        self.record(response)

    def record(self, response: httpx2.Response) -> None:
        url = str(response.request.url)
        if url.startswith(self.base_url):
            path = response.request.url.path
            self.answers.append((response.request.method, path, response.status_code))
            if "mcp-session-id" in response.headers:
                self.session_ids[path] = response.headers["mcp-session-id"]

    def sync_client(self) -> httpx2.Client:
        return httpx2.Client(timeout=HTTP_TIMEOUT_S, event_hooks={"response": [self.record]})


def jsonrpc(method: str, params: dict | None = None, request_id: int = 1) -> dict:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def post(recorder: Recorder, url: str, message: dict, token: str | None = None,
         session_id: str | None = None) -> httpx2.Response:
    headers = {"Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session_id:
        headers["Mcp-Session-Id"] = session_id
        headers["MCP-Protocol-Version"] = "2025-06-18"
    with recorder.sync_client() as http:
        return http.post(url, json=message, headers=headers)


@asynccontextmanager
async def session_on(url: str, recorder: Recorder,
                     client: OAuthClient | None = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP session (signed in by `client` if given); exiting DELETEs it."""
    http = client.http_client() if client else httpx2.AsyncClient(timeout=HTTP_TIMEOUT_S)
    http.event_hooks["response"].append(recorder.hook)
    async with http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def text_of(result) -> str:
    assert not result.is_error, result
    return "".join(block.text for block in result.content if block.type == "text")


def forged(jwt: str) -> str:
    """The same JWT with one signature character changed (mid-signature, so that the
    decoded bytes change)."""
    header, payload, signature = jwt.split(".")
    i = len(signature) // 2
    replacement = "A" if signature[i] != "A" else "B"
    return ".".join([header, payload, signature[:i] + replacement + signature[i + 1:]])


@dataclass(frozen=True)
class Traffic:
    answers: list[tuple[str, str, int]]  # what the clients saw, gateway requests only
    metrics_text: str  # drawbridge's /metrics once the traffic was over
    notes: dict[str, int]  # status of the single raw requests, by name


def drive_traffic(gw) -> Traffic:
    recorder = Recorder(gw.base_url)
    notes: dict[str, int] = {}

    # Public route: a plain MCP session.
    async def public_session():
        async with session_on(gw.public_url, recorder) as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
            assert "echo" in tools
            assert text_of(await session.call_tool("echo", {"message": "scraped"})) == "Echo: scraped"
            return session

    run(public_session)

    # Protected route: alice signs in from the bare URL (401 missing_token first), sees a
    # filtered list, steps up for echo, is refused get-env (outside the policy); bob
    # presents her session id while she is still in it.
    alice = OAuthClient(gw.everything_url, user="alice")
    bob = OAuthClient(gw.everything_url, user="bob")
    hijack: dict[str, int] = {}

    async def alice_session():
        async with session_on(gw.everything_url, recorder, alice) as session:
            assert {tool.name for tool in (await session.list_tools()).tools} == set()
            echoed = await session.call_tool("echo", {"message": "stepped up"})
            assert text_of(echoed) == "Echo: stepped up"
            with pytest.raises(MCPError):
                await session.call_tool("get-env", {})
            sid = recorder.session_ids[urllib.parse.urlsplit(gw.everything_url).path]
            async with session_on(gw.everything_url, recorder, bob) as bobs:
                await bobs.list_tools()
            stolen = await anyio.to_thread.run_sync(
                lambda: post(recorder, gw.everything_url, jsonrpc("tools/list"),
                             bob.access_token, sid))
            hijack["stolen"] = stolen.status_code
            await session.list_tools()  # alice carries on

    run(alice_session)
    notes["hijack"] = hijack["stolen"]

    # Refusals without an SDK.
    notes["no_token"] = post(recorder, gw.everything_url, jsonrpc("tools/list")).status_code
    notes["forged"] = post(recorder, gw.everything_url, jsonrpc("tools/list"),
                           forged(alice.access_token)).status_code
    notes["other_route"] = post(recorder, gw.whoami_url, jsonrpc("tools/list"),
                                alice.access_token).status_code
    notes["no_route"] = post(recorder, f"{gw.base_url}/nowhere/mcp", jsonrpc("ping")).status_code
    notes["dead_upstream"] = post(recorder, gw.dead_url, jsonrpc("ping")).status_code
    notes["unknown_key"] = post(recorder, gw.public_url, jsonrpc("tools/list"),
                                session_id="v1.nokey.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").status_code

    # Token exchange: issued and cached (whoami twice), refused (whoami-wide).
    whoami = OAuthClient(gw.whoami_url, user="alice")

    async def whoami_session():
        async with session_on(gw.whoami_url, recorder, whoami) as session:
            for _ in range(2):
                assert json.loads(text_of(await session.call_tool("whoami", {})))["claims"]["sub"] == "alice"

    run(whoami_session)
    wide = OAuthClient(gw.whoami_wide_url, user="alice")

    async def wide_session():
        with pytest.raises(Exception) as failed:  # the SDK wraps the 403 in ExceptionGroups
            async with session_on(gw.whoami_wide_url, recorder, wide):
                pass
        return failed.value

    failure = run(wide_session)
    # Not any exception: the gateway's refusal of the exchange, as a 403 with its code.
    assert "refused a token for the upstream" in repr(failure), repr(failure)
    refused = post(recorder, gw.whoami_wide_url, jsonrpc("tools/list"), wide.access_token)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == -32006, refused.text

    return Traffic(recorder.answers, settled_metrics(gw.admin_url), notes)


def settled_metrics(admin_url: str) -> str:
    """The gateway's /metrics once nothing is in flight: no event stream open (a GET
    stream is counted when it ends, a moment after the client let go of it) and the
    request count unchanged between two reads."""
    deadline = time.monotonic() + SCRAPE_WAIT_S
    previous = None
    while True:
        status, text = http_get(f"{admin_url}/metrics")
        assert status == 200, text
        samples = parse_exposition(text)
        streams = sum(v for name, _, v in samples if name == "drawbridge_active_streams")
        requests = sum(v for name, _, v in samples if name == "drawbridge_requests_total")
        if streams == 0 and requests == previous:
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"gateway still busy after {SCRAPE_WAIT_S:.0f}s: {streams} streams open")
        previous = requests
        time.sleep(0.3)


# --- Prometheus ------------------------------------------------------------------------

def prom_api(prometheus: str, path: str, **params) -> dict:
    query = urllib.parse.urlencode(params, doseq=True)
    status, body = http_get(f"{prometheus}{path}?{query}" if query else f"{prometheus}{path}",
                            timeout=10.0)
    answer = json.loads(body)
    assert status == 200 and answer.get("status") == "success", (path, params, status, body[:2000])
    return answer["data"]


def instant(prometheus: str, expr: str) -> list[dict]:
    data = prom_api(prometheus, "/api/v1/query", query=expr)
    assert data["resultType"] == "vector", (expr, data["resultType"])
    return data["result"]


def scalar_or_none(prometheus: str, expr: str) -> float | None:
    result = instant(prometheus, expr)
    return float(result[0]["value"][1]) if result else None


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if match:
            name, labels, value = match.groups()
            samples.append((name, dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or "")),
                            float(value)))
    return samples


def wait_for_scrapes(prometheus: str, instance: str, requests_total: float) -> None:
    """Until Prometheus holds the gateway's final request count and every drawbridge
    series has at least two samples in the last minute (so rate() sees it)."""
    deadline = time.monotonic() + SCRAPE_WAIT_S
    seen = None
    while time.monotonic() < deadline:
        seen = scalar_or_none(prometheus, f'sum(drawbridge_requests_total{{instance="{instance}"}})')
        # (count_over_time() would drop the names and collide: count the raw samples.)
        window = prom_api(prometheus, "/api/v1/query",
                          query=f'{{__name__=~"drawbridge_.+", instance="{instance}"}}[1m]')
        fewest = min((len(series["values"]) for series in window["result"]), default=None)
        if seen == requests_total and fewest is not None and fewest >= 2:
            return
        time.sleep(0.5)
    pytest.fail(f"Prometheus did not catch up within {SCRAPE_WAIT_S:.0f}s: it holds {seen} "
                f"requests, the gateway counted {requests_total}")


def wait_for_rule_evaluation(prometheus: str, after: float) -> list[dict]:
    """The alerting rules, once every group has been evaluated after `after` (unix s)."""
    deadline = time.monotonic() + SCRAPE_WAIT_S
    while True:
        groups = prom_api(prometheus, "/api/v1/rules", type="alert")["groups"]
        last = [epoch_of(group["lastEvaluation"]) for group in groups]
        if groups and all(t > after for t in last):
            return groups
        if time.monotonic() > deadline:
            pytest.fail(f"rule groups not evaluated within {SCRAPE_WAIT_S:.0f}s: {last}")
        time.sleep(0.5)


def epoch_of(rfc3339: str) -> float:
    """Seconds of an RFC 3339 timestamp as Prometheus prints it (UTC, nanoseconds)."""
    match = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z$", rfc3339)
    if not match:
        return 0.0  # not a timestamp: treat as never evaluated
    y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
    return calendar.timegm((y, mo, d, h, mi, s)) + float(match.group(7) or 0)


@dataclass(frozen=True)
class Scraped:
    prometheus: str
    instance: str
    traffic: Traffic
    rule_groups: list[dict]


@pytest.fixture(scope="module")
def scraped(metrics_gateway, prometheus) -> Scraped:
    traffic = drive_traffic(metrics_gateway)
    total = sum(value for name, _, value in parse_exposition(traffic.metrics_text)
                if name == "drawbridge_requests_total")
    wait_for_scrapes(prometheus, metrics_gateway.admin_target, total)
    caught_up = time.time()
    groups = wait_for_rule_evaluation(prometheus, caught_up)
    return Scraped(prometheus, metrics_gateway.admin_target, traffic, groups)


# --- the queries deploy/ ships ----------------------------------------------------------

def dashboard_panels() -> list[dict]:
    def walk(items):
        for panel in items:
            yield panel
            yield from walk(panel.get("panels", []))

    return [p for p in walk(json.loads(DASHBOARD.read_text())["panels"]) if p.get("type") != "row"]


def substitute(expr: str, values: dict[str, str]) -> str:
    out = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)
    assert "$" not in out, f"unknown dashboard variable in {expr!r}"
    return out


def dashboard_queries(values: dict[str, str]) -> list[tuple[str, str]]:
    return [(f"panel {p['title']!r} [{t.get('refId', 'A')}, route={values['route']}]",
             substitute(t["expr"], values))
            for p in dashboard_panels() for t in p.get("targets", [])]


def alert_queries(groups: list[dict]) -> list[tuple[str, str]]:
    return [(f"alert {rule['name']}", rule["query"]) for group in groups for rule in group["rules"]]


SELECTOR = re.compile(r"\b(drawbridge_[a-z_]+|up)\b\s*(\{[^}]*\})?(?!\s*\()")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def selectors(expr: str) -> list[str]:
    """The vector selectors of an expression, normalized (`route=~".*"` dropped: it
    matches every series, so it never decides whether one exists)."""
    out = []
    for name, matchers in SELECTOR.findall(expr):
        kept = [(label, op, value) for label, op, value in MATCHER.findall(matchers or "")
                if not (label == "route" and op == "=~" and value == ".*")]
        text = ", ".join(f'{label}{op}"{value}"' for label, op, value in kept)
        out.append(f"{name}{{{text}}}" if kept else name)
    return out


def name_of(selector: str) -> str:
    return re.match(r"[\w:]+", selector).group(0)


def base_metric(selector: str) -> str:
    """The metric family (what `# TYPE` names): a histogram's series have suffixes."""
    return HISTOGRAM_SUFFIX.sub("", name_of(selector))


def top_level_operands(expr: str) -> list[str]:
    """An alert expression split at its top-level `and`/`unless`/`or`, each operand
    without a trailing comparison against a number (`> 0.05`, `== 0`): what is left
    returns series whenever its metrics exist."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(expr):
        c = expr[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == '"':
            i = expr.index('"', i + 1)
        elif depth == 0:
            m = re.match(r"\s(and|unless|or)\s", expr[i - 1:i + 8]) if i else None
            if m:
                parts.append(expr[start:i])
                start = i + len(m.group(1))
        i += 1
    parts.append(expr[start:])
    return [re.sub(r"\s*(>=|<=|==|!=|>|<)\s*(bool\s+)?[-+]?[\d.]+\s*$", "", p.strip()) for p in parts]


def test_prometheus_scraped_the_traffic_request_for_request(scraped):
    """(a) drawbridge_requests_total in Prometheus is what the clients saw, per route,
    method and status."""
    notes = scraped.traffic.notes
    assert notes == {"hijack": 404, "no_token": 401, "forged": 401, "other_route": 401,
                     "no_route": 404, "dead_upstream": 502, "unknown_key": 404}, notes
    routes = {"/public/mcp": "public", "/everything/mcp": "everything", "/whoami/mcp": "whoami",
              "/whoami-wide/mcp": "whoami-wide", "/dead/mcp": "dead"}
    expected = Counter()
    well_known = "/.well-known/oauth-protected-resource"
    for method, path, status in scraped.traffic.answers:
        route = next((r for prefix, r in routes.items() if path == prefix or path.startswith(prefix + "/")),
                     None)
        # Protected-resource metadata (/.well-known/oauth-protected-resource/<route path>)
        # is served by the gateway itself and counted under the route it describes; a
        # metadata path it does not serve (404) is a path no route matches: `none`.
        if path.startswith(well_known + "/") and status != 404:
            route = routes.get(path[len(well_known):])
            assert route, f"metadata served for no known route: {path}"
        expected[(route or "none", method, str(status))] += 1

    result = instant(scraped.prometheus,
                     f'sum by (route, method, status) (drawbridge_requests_total{{instance="{scraped.instance}"}})')
    scraped_counts = {(s["metric"]["route"], s["metric"]["method"], s["metric"]["status"]): float(s["value"][1])
                      for s in result}
    scraped_counts = {k: v for k, v in scraped_counts.items() if v > 0}
    # Exact for POST and DELETE. A GET event stream that the SDK opens and then cancels
    # (as a session closes) may be answered after the client stopped listening: the
    # gateway counts it, the client never saw it. So GETs are "at least".
    exact = lambda counts: {k: float(v) for k, v in counts.items() if k[1] != "GET"}
    assert exact(scraped_counts) == exact(expected), (
        sorted(scraped_counts.items()), sorted(expected.items()))
    for key, count in expected.items():
        assert scraped_counts.get(key, 0) >= count, (key, sorted(scraped_counts.items()))
    # The traffic this test is about, by name.
    for key in [("public", "POST", "200"), ("everything", "POST", "200"), ("everything", "POST", "401"),
                ("everything", "POST", "403"), ("everything", "POST", "404"), ("none", "POST", "404"),
                ("dead", "POST", "502"), ("whoami", "POST", "200"), ("whoami-wide", "POST", "403")]:
        assert scraped_counts.get(key, 0) >= 1, (key, sorted(scraped_counts.items()))


def test_alert_rules_are_all_loaded_and_healthy(scraped):
    names_in_file = re.findall(r"^\s*-\s*alert:\s*(\w+)", ALERT_RULES.read_text(), re.MULTILINE)
    rules = [rule for group in scraped.rule_groups for rule in group["rules"]]
    assert sorted(rule["name"] for rule in rules) == sorted(names_in_file)
    unhealthy = [(rule["name"], rule["health"], rule.get("lastError")) for rule in rules
                 if rule["health"] != "ok"]
    assert not unhealthy, unhealthy
    states = {rule["name"]: rule["state"] for rule in rules if rule["state"] != "inactive"}
    print(f"\nalert states after the traffic (all others inactive): {states or 'none'}")
    assert all(rule["state"] in {"inactive", "pending", "firing"} for rule in rules), rules
    # Nothing in this run is down or unreachable: these must not even be pending. (Alerts
    # the test traffic does provoke, such as refused tokens or unknown session keys, may
    # be pending or, on a slow run, firing.)
    for quiet in ["DrawbridgeInstanceDown", "DrawbridgeIssuerUnavailable",
                  "DrawbridgeJwksRefreshFailing", "DrawbridgeTokenExchangeUnavailable"]:
        assert quiet not in states, (quiet, states)


def test_every_dashboard_and_alert_query_works_on_real_data(scraped):
    """(b) Every PromQL expression deploy/ ships, against the scraped data."""
    prometheus = scraped.prometheus
    queries = [(where, expr, must) for values, must in DASHBOARD_PASSES
               for where, expr in dashboard_queries(values)]
    queries += [(where, expr, False) for where, expr in alert_queries(scraped.rule_groups)]
    exposition = scraped.traffic.metrics_text
    declared = set(re.findall(r"^# TYPE (\S+) ", exposition, re.MULTILINE))
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "src").rglob("*.rs"))

    selector_series: dict[str, int] = {}
    label_names: dict[str, set[str]] = {}

    def series_count(selector: str) -> int:
        if selector not in selector_series:
            selector_series[selector] = len(instant(prometheus, selector))
        return selector_series[selector]

    def labels_of(metric: str) -> set[str]:
        if metric not in label_names:
            found = prom_api(prometheus, "/api/v1/series", **{"match[]": metric})
            label_names[metric] = {label for series in found for label in series} - {"__name__"}
        return label_names[metric]

    problems, empty = [], []
    for where, expr, must_have_series in queries:
        # 1. It evaluates (prom_api asserts status success).
        result = instant(prometheus, expr)
        # 2. Every selector exists, or is known not to be produced here (and is real).
        missing = []
        for selector in selectors(expr):
            count = series_count(selector)
            metric = base_metric(selector)
            if selector in NOT_PRODUCED:
                if count:
                    problems.append(f"{where}: {selector} is listed in NOT_PRODUCED but has series")
                missing.append(selector)
                if metric in REGISTERED_ONLY_WHEN_CONFIGURED:
                    if f'"{metric}"' not in source:
                        problems.append(f"{where}: {metric} is never registered by src/")
                elif metric != "up" and metric not in declared:
                    problems.append(f"{where}: {metric} has no # TYPE line in /metrics")
                for label, op, value in MATCHER.findall(selector):
                    if label not in labels_of(name_of(selector)):
                        problems.append(f"{where}: {metric} has no label {label}")
                    for word in value.split("|") if op in ("=", "=~") else []:
                        if re.fullmatch(r"\w+", word) and f'"{word}"' not in source:
                            problems.append(f"{where}: {label}={word!r} is never produced by src/")
            elif count == 0 and must_have_series:
                problems.append(f"{where}: {selector} returns no series; drive traffic that "
                                "produces it or list it in NOT_PRODUCED with the reason")
        # 3. Grouping labels exist on the metrics grouped.
        metrics = {name_of(s) for s in selectors(expr)}
        available = set().union(*(labels_of(m) for m in metrics)) if metrics else set()
        for group in GROUPING.findall(expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                if label not in available:
                    problems.append(f"{where}: groups by {label!r}, which none of "
                                    f"{sorted(metrics)} has ({sorted(available)})")
        # 4. Series when every selector has them (for alerts, per operand, thresholds off).
        operands = top_level_operands(expr) if where.startswith("alert") else [expr]
        for operand in operands:
            if not all(series_count(s) for s in selectors(operand)):
                continue
            if not instant(prometheus, operand):
                problems.append(f"{where}: {operand!r} returns no series although all its "
                                "selectors do")
        if not result:
            if missing:
                why = "; ".join(f"{s}: {NOT_PRODUCED[s]}" for s in missing)
            elif where.startswith("alert"):
                why = "threshold not crossed (the operands return series)"
            elif must_have_series:
                why = "?"
                # A panel may only be empty for want of traffic this test cannot make.
                problems.append(f"{where}: {expr!r} returns no series")
            else:
                why = "nothing of this kind on this route"
            empty.append(f"{where}: {why}")
    print("\nqueries with an empty result:\n  " + "\n  ".join(empty))
    assert not problems, "\n".join(problems)


def test_route_variable_lists_the_routes(scraped):
    """The dashboard's `route` variable: label_values(drawbridge_requests_total, route)."""
    template = json.loads(DASHBOARD.read_text())["templating"]["list"]
    (variable,) = [v for v in template if v["name"] == "route"]
    query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
    metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query).groups()
    values = prom_api(scraped.prometheus, f"/api/v1/label/{label}/values", **{"match[]": metric})
    assert {"public", "everything", "whoami", "whoami-wide", "dead", "none"} <= set(values), values
