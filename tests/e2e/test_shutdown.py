"""SIGTERM with a request in flight, against the real everything server.

This module owns what is sent and asserted when a drawbridge process of its own is
stopped with SIGTERM while a streamed tools/call (trigger-long-running-operation, a few
seconds long) is in flight: what README.md#operations promises (/readyz turns false at
once while both listeners keep serving for `shutdown_drain`, then the listeners stop,
in-flight requests get up to 10 s, exit status 0 once they are done) against what happens. The gateway is this module's own (it is stopped by the test), started with
conftest.py's helpers; the everything server is conftest.py's.
"""

from __future__ import annotations

import signal
import socket
import time
from dataclasses import dataclass

import httpx2
import pytest

from conftest import LOOPBACK, free_port, gateway_config, start_drawbridge, stop_peer

OPERATION_S = 3  # the in-flight tool call: longer than the drain
DRAIN_S = 2
EXIT_WAIT_S = 20.0
HTTP_TIMEOUT_S = 15.0
PROTOCOL = "2025-06-18"


@dataclass(frozen=True)
class Observed:
    readyz_before: int
    readyz_during_drain: int | str  # on a new connection: status, or the exception's name
    new_request_during_drain: int | str  # a ping on a new MCP connection
    new_connection_after_drain: str  # "refused" or "accepted"
    in_flight_completed: bool
    in_flight_cut_after_s: float | None  # seconds after SIGTERM, when it did not complete
    exit_code: int | None
    exit_after_s: float


@pytest.fixture(scope="module")
def terminated(everything_server, peer_log_dir) -> Observed:
    listen_port, admin_port = free_port(), free_port()
    admin_url = f"http://{LOOPBACK}:{admin_port}"
    url = f"http://{LOOPBACK}:{listen_port}/everything/mcp"
    proc = start_drawbridge("drawbridge-sigterm",
                            f"shutdown_drain: {DRAIN_S}s\n"
                            + gateway_config(listen_port, admin_port, everything_server),
                            peer_log_dir, admin_url)
    try:
        headers = {"Accept": "application/json, text/event-stream"}
        with httpx2.Client(timeout=HTTP_TIMEOUT_S) as mcp, httpx2.Client(timeout=5.0) as admin:
            init = mcp.post(url, headers=headers, json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                           "clientInfo": {"name": "sigterm-e2e", "version": "1"}}})
            assert init.status_code == 200, init.text
            headers |= {"Mcp-Session-Id": init.headers["mcp-session-id"],
                        "MCP-Protocol-Version": PROTOCOL}
            mcp.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            readyz_before = admin.get(f"{admin_url}/readyz").status_code
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "trigger-long-running-operation",
                               "arguments": {"duration": OPERATION_S, "steps": OPERATION_S},
                               "_meta": {"progressToken": "p"}}}
            completed, cut_after, sent_at = False, None, None
            readyz_after, ping_after, new_connection = None, None, None
            try:
                with mcp.stream("POST", url, headers=headers, json=call) as stream:
                    for line in stream.iter_lines():
                        if '"result"' in line:
                            completed = True
                        if line.startswith("data:") and sent_at is None:
                            # The first progress event: the call is in flight. Stop now.
                            proc.send_signal(signal.SIGTERM)
                            sent_at = time.monotonic()
                            # New connections, as a load balancer's probe and a new client
                            # would open them. Readiness turns false once the signal is
                            # handled: poll for it (bounded by the drain).
                            while True:
                                try:
                                    with httpx2.Client(timeout=5.0) as probe:
                                        readyz_after = probe.get(f"{admin_url}/readyz").status_code
                                except httpx2.HTTPError as error:
                                    readyz_after = type(error).__name__
                                if readyz_after == 503 or time.monotonic() > sent_at + DRAIN_S:
                                    break
                                time.sleep(0.1)
                            try:
                                with httpx2.Client(timeout=5.0) as other:
                                    ping_after = other.post(url, headers=headers, json={
                                        "jsonrpc": "2.0", "id": 3, "method": "ping"}).status_code
                            except httpx2.HTTPError as error:
                                ping_after = type(error).__name__
                            # The listener closes when the drain ends: from then on, poll
                            # (bounded) until a new connection is refused.
                            time.sleep(max(0.0, sent_at + DRAIN_S - time.monotonic()))
                            new_connection = "accepted"
                            close_deadline = time.monotonic() + 10.0
                            while time.monotonic() < close_deadline:
                                try:
                                    socket.create_connection((LOOPBACK, listen_port),
                                                             timeout=1).close()
                                except OSError:
                                    new_connection = "refused"
                                    break
                                time.sleep(0.1)
            except httpx2.HTTPError:
                cut_after = time.monotonic() - sent_at if sent_at else None
            assert sent_at is not None, "no progress event arrived"
        try:
            code = proc.wait(timeout=EXIT_WAIT_S)
        except Exception:
            code = None
        return Observed(readyz_before, readyz_after, ping_after, new_connection, completed,
                        cut_after, code, time.monotonic() - sent_at)
    finally:
        stop_peer(proc)


def test_sigterm_turns_unready_drains_then_stops_listeners_and_exits_0(terminated):
    assert terminated.readyz_before == 200
    # During the drain: probes fail, traffic is still served.
    assert terminated.readyz_during_drain == 503, terminated
    assert terminated.new_request_during_drain == 200, terminated
    # After it: the listeners are closed.
    assert terminated.new_connection_after_drain == "refused", terminated
    assert terminated.exit_code == 0, terminated
    # It exits once the in-flight call is done, not after the whole 10 s grace period
    # (an upper bound by this test's clock: the call ends OPERATION_S after it started,
    # which was before the signal).
    assert terminated.exit_after_s < max(DRAIN_S, OPERATION_S) + 4, terminated


def test_sigterm_lets_a_longer_in_flight_call_finish(terminated):
    assert terminated.in_flight_completed, terminated
