"""An outside MCP authorization conformance scanner, mcp-authlab, graded against drawbridge.

This module owns running mcp-authlab 0.2.2 (PyPI, pinned in requirements.txt) the way an
auditor would, and asserting on each of its findings: `mcp-authlab login URL --no-browser`
registers a client at the e2e authorization server, signs in headlessly (it follows the
server's redirects with plain HTTP requests and no cookies; authserver/README.md says how
the development server allows that) and probes the authorization server (the ASF checks);
`mcp-authlab scan URL --tool echo --format json` then probes one of the gateway's
protected routes (challenge, RFC 9728 metadata, token validation, sessions, Origin,
protocol version) and grades it: `everything` (JWT access tokens) and `opaque` (opaque
tokens the gateway introspects), both in front of server-everything. The report's JSON
is parsed; every check has the outcome written in EXPECTED below, and no MUST check may
fail. docs/security/authlab.md records what the scanner checks and each finding.
Starting the peers is conftest.py's job.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SCANNER = [sys.executable, "-m", "mcp_authlab"]
COMMAND_TIMEOUT_S = 120.0
# The routes scanned (OAuthGateway attributes), each in front of server-everything.
ROUTES = {"everything": "everything_url", "opaque": "opaque_url"}
# What the scan's token may do on those routes: initialize (mcp:tools) and call
# echo (tools:echo), so that echo is listed and SCOPE-01 can call it.
LOGIN_SCOPE = "mcp:tools tools:echo"
TOOL = "echo"
# The authorization server's answer to a request without `scope` (authserver DEFAULT_SCOPE).
DEFAULT_SCOPE = "mcp:tools"

# Failures that another change closes, with where: each is asserted to still fail
# (a strict xfail), so the entry has to go when that change lands.
PENDING: dict[str, str] = {}

# Every check of mcp-authlab 0.2.2 and its outcome against each route in ROUTES.
EXPECTED = {
    # http://127.0.0.1: the scanner accepts plain HTTP on loopback only, as a warning
    # (half credit for a MUST); anything but https elsewhere is a MUST failure.
    "TLS-01": "warn",
    "CHAL-01": "pass", "CHAL-02": "pass", "CHAL-03": "pass",
    "PRM-01": "pass", "PRM-02": "pass", "PRM-03": "pass", "PRM-04": "pass",
    "PRM-05": "pass", "PRM-06": "pass",
    "ASM-01": "pass", "ASM-02": "pass", "ASM-03": "pass", "ASM-04": "pass",
    "ASM-05": "pass", "ASM-06": "pass",
    "ASF-01": "pass", "ASF-02": "pass", "ASF-03": "pass", "ASF-04": "pass",
    # No refresh token: oidc-provider grants offline_access only with prompt=consent, which
    # the scanner does not send. Not applicable, so it does not count.
    "ASF-05": "skip",
    "ASF-06": "pass",
    "TOK-01": "pass", "TOK-02": "pass", "TOK-03": "pass", "TOK-04": "pass",
    "TOK-05": "pass", "TOK-06": "pass",
    "SCOPE-01": "pass",
    "SESS-01": "pass", "SESS-02": "pass",
    "ORIG-01": "pass",
    "VER-01": "pass",
}


@dataclass(frozen=True)
class Scan:
    login_output: str
    report: dict
    seconds: float

    def result(self, check_id: str) -> dict:
        found = [r for r in self.report["results"] if r["id"] == check_id]
        assert len(found) == 1, f"{check_id}: {len(found)} results in the report"
        return found[0]


def run_scanner(args: list[str], token_store: Path) -> subprocess.CompletedProcess:
    """One mcp-authlab command; its token store is the test's own file, never ~/.config."""
    env = {**os.environ, "MCP_AUTHLAB_TOKENS": str(token_store), "NO_COLOR": "1"}
    return subprocess.run(SCANNER + args, capture_output=True, text=True, env=env,
                          timeout=COMMAND_TIMEOUT_S, check=False)


def login(url: str, token_store: Path, scope: str | None) -> subprocess.CompletedProcess:
    args = ["login", url, "--no-browser", "--no-color", "--timeout", "30"]
    return run_scanner(args + (["--scope", scope] if scope else []), token_store)


def stored_token_claims(token_store: Path, url: str) -> dict:
    """The claims of the access token `login` stored for `url` (read, not verified)."""
    entry = json.loads(token_store.read_text())[url]
    payload = entry["access_token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture(scope="module", params=sorted(ROUTES))
def scan(request, oauth_gateway, tmp_path_factory) -> Scan:
    """login + scan of one route, once per route for the module."""
    if importlib.util.find_spec("mcp_authlab") is None:
        pytest.fail("mcp-authlab missing: run scripts/setup-e2e.sh", pytrace=False)
    directory = tmp_path_factory.mktemp(f"authlab-{request.param}")
    tokens, report = directory / "tokens.json", directory / "report.json"
    url = getattr(oauth_gateway, ROUTES[request.param])
    started = time.monotonic()
    signed_in = login(url, tokens, LOGIN_SCOPE)
    assert signed_in.returncode == 0, f"login failed:\n{signed_in.stdout}\n{signed_in.stderr}"
    scanned = run_scanner(["scan", url, "--tool", TOOL, "--format", "json", "--output",
                           str(report)], tokens)
    assert scanned.returncode == 0, f"scan failed:\n{scanned.stdout}\n{scanned.stderr}"
    return Scan(signed_in.stdout + signed_in.stderr, json.loads(report.read_text()),
                time.monotonic() - started)


def test_every_check_of_the_scanner_is_expected(scan):
    """A new scanner version with other checks must be looked at, not silently passed."""
    assert {r["id"] for r in scan.report["results"]} == set(EXPECTED)
    assert scan.report["version"] == "0.2.2"


def test_no_must_failure(scan):
    unexpected = set(scan.report["must_failures"]) - set(PENDING)
    assert not unexpected, _failures(scan, unexpected)
    assert scan.report["critical_failures"] == []
    # Every critical check ran: login gave the scan a token and a foreign-audience token.
    assert scan.report["coverage"]["critical_not_run"] == []
    assert scan.report["coverage"]["ran"] == scan.report["coverage"]["applicable"]


@pytest.mark.parametrize("check_id", [
    pytest.param(cid, marks=pytest.mark.xfail(strict=True, reason=PENDING[cid]))
    if cid in PENDING else cid
    for cid in EXPECTED
])
def test_check_outcome(scan, check_id):
    result = scan.result(check_id)
    assert result["status"] == EXPECTED[check_id], _failures(scan, {check_id})


def test_gateway_answers_probes_itself(scan):
    """The refusals the scan counts as passes are the gateway's own, for the right reason
    (its challenge and error descriptions), not an upstream's."""
    gateway_401 = 'Bearer resource_metadata="'
    for check_id, reason in [("TOK-01", "invalid_token"), ("TOK-02", "invalid_token"),
                             ("TOK-03", "invalid_token"), ("TOK-05", "invalid_request")]:
        evidence = scan.result(check_id)["evidence"]
        assert evidence["http_status"] == 401, check_id
        (challenge,) = evidence["www_authenticate"]
        assert challenge.startswith(gateway_401) and f'error="{reason}"' in challenge, check_id
    assert "not meant for this resource" in scan.result("TOK-03")["evidence"]["www_authenticate"][0]
    # The audience probe really had a token for another resource (the issuer's own URL).
    assert scan.report["login"]["foreign_resource"] == scan.report["login"]["issuer"]


def test_plain_http_on_loopback_is_the_only_warning(scan):
    assert scan.report["warnings"] == ["TLS-01"]
    assert "loopback" in scan.result("TLS-01")["message"]


def test_login_without_scope_gets_the_default_scope(oauth_gateway, tmp_path):
    """The scanner's default: no `scope` in the authorization request. The development
    authorization server then grants DEFAULT_SCOPE (RFC 6749 section 3.3) instead of
    ending the sign-in in access_denied, and the token is bound to the route."""
    tokens = tmp_path / "tokens.json"
    signed_in = login(oauth_gateway.everything_url, tokens, scope=None)
    assert signed_in.returncode == 0, f"login failed:\n{signed_in.stdout}\n{signed_in.stderr}"
    claims = stored_token_claims(tokens, oauth_gateway.everything_url)
    assert claims["scope"] == DEFAULT_SCOPE
    assert claims["aud"] == oauth_gateway.everything_url


def test_login_and_scan_are_quick(scan):
    """login + scan take about 1.5 s here (peers already up); the bound keeps the suite's
    time budget honest if a probe starts waiting on a timeout."""
    assert scan.seconds < 30, f"login + scan took {scan.seconds:.1f}s"


def _failures(scan: Scan, check_ids) -> str:
    lines = [f"grade {scan.report['grade']} ({scan.report['conformance']})"]
    for check_id in sorted(check_ids):
        result = scan.result(check_id)
        lines.append(f"{check_id} {result['status']}: {result['message']}\n"
                     f"  evidence: {json.dumps(result['evidence'])[:800]}")
    return "\n".join(lines + ["login:", scan.login_output[-2000:]])
