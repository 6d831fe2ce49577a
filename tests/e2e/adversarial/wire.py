"""Byte-level MCP clients for the adversarial suite, and the servers' execution logs.

The SDK clients normalise what they send; an attack needs the exact bytes: its own
Content-Type, duplicated headers and parameters, odd methods and request targets. So the
clients here are thin layers over http.client (which sends the method, target and header
lines as given): `Streamable` for Streamable HTTP sessions, `Legacy` for the HTTP+SSE
transport (a reader thread collects the events of its GET stream), and `ExecLog`, the
JSON-lines log in which ts_server.mjs and py_server.py record every request they receive
and every tool, prompt and resource they execute.

Every wait is bounded, and a wait is on a condition (an event, a log line), never a sleep.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HTTP_TIMEOUT_S = 10.0
WAIT_S = 10.0
PROTOCOL = "2025-11-25"  # the TS SDK's event store primes streams from this version on
FORBIDDEN_NAMES = ("admin-delete", "get-secret", "forbidden-prompt", "test://secret/key",
                   "secret-key")


def initialize_message(request_id: Any = 0, protocol: str = PROTOCOL) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize",
            "params": {"protocolVersion": protocol, "capabilities": {},
                       "clientInfo": {"name": "adversarial", "version": "1"}}}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def tools_call(name: str, arguments: dict | None = None, request_id: Any = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments or {}}}


def encode(message: Any) -> bytes:
    return message if isinstance(message, bytes) else json.dumps(message).encode()


def marker() -> str:
    """A value unique to one case, to find its traces in the logs."""
    return f"m-{uuid.uuid4().hex[:12]}"


# --- HTTP -----------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def messages(self) -> list[Any]:
        """The JSON-RPC messages in the body: an event stream's data, or a JSON body."""
        content_type = (self.header("content-type") or "").lower()
        if content_type.startswith("text/event-stream"):
            return [json.loads(event.data) for event in parse_sse(self.body) if event.data.strip()]
        if not self.body.strip():
            return []
        try:
            value = json.loads(self.body)
        except ValueError:
            return []
        return value if isinstance(value, list) else [value]

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def split_base(base: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(base)
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def request(base: str, method: str, target: str, headers: list[tuple[str, str]],
            body: bytes | None = None, timeout: float = HTTP_TIMEOUT_S) -> Reply:
    """One HTTP/1.1 exchange with exactly this method, target and header lines."""
    host, port = split_base(base)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        names = {name.lower() for name, _ in headers}
        if "host" not in names:
            conn.putheader("Host", f"{host}:{port}")
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


# --- Server-sent events -------------------------------------------------------------

@dataclass
class Event:
    event: str = "message"
    id: str | None = None
    data: str = ""


def parse_sse(raw: bytes) -> list[Event]:
    """Events of a complete event stream (lines end in LF, CRLF or CR)."""
    events, current, data = [], Event(), []
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    for line in text.split("\n"):
        if not line:
            if data or current.id is not None or current.event != "message":
                current.data = "\n".join(data)
                events.append(current)
            current, data = Event(), []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
    return events


class EventStream:
    """A GET event stream read by a background thread; events and raw bytes are kept."""

    def __init__(self, base: str, target: str, headers: list[tuple[str, str]]) -> None:
        host, port = split_base(base)
        self._conn = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT_S)
        self._conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        self._conn.putheader("Host", f"{host}:{port}")
        for name, value in headers:
            self._conn.putheader(name, value)
        self._conn.endheaders()
        self._response = self._conn.getresponse()
        self.status = self._response.status
        self.headers = self._response.getheaders()
        self.raw = bytearray()
        self.events: list[Event] = []
        self.ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        pending = b""
        try:
            while True:
                chunk = self._response.read1(65536) if self.status == 200 else self._response.read()
                if not chunk:
                    break
                with self._changed:
                    self.raw.extend(chunk)
                    pending += chunk
                    # Complete events end with a blank line.
                    normalised = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                    head, sep, rest = normalised.rpartition(b"\n\n")
                    if sep:
                        self.events.extend(parse_sse(head + sep))
                        pending = rest
                    self._changed.notify_all()
                if self.status != 200:
                    break
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # the stream ended or close() shut it down
        finally:
            with self._changed:
                self.ended = True
                self._changed.notify_all()

    def wait(self, condition: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        """Wait until `condition()` holds or the stream ends; True when it holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if self.ended or remaining <= 0:
                    return condition()
                self._changed.wait(remaining)
            return True

    def messages(self) -> list[Any]:
        with self._changed:
            out = []
            for event in self.events:
                try:
                    out.append(json.loads(event.data)) if event.data.strip() else None
                except ValueError:
                    continue
            return out

    def message_with_id(self, request_id: Any) -> Any:
        for message in self.messages():
            if isinstance(message, dict) and message.get("id") == request_id and (
                    "result" in message or "error" in message):
                return message
        return None

    def raw_text(self) -> str:
        with self._changed:
            return bytes(self.raw).decode("utf-8", errors="replace")

    def close(self) -> None:
        try:
            if self._conn.sock is not None:
                self._conn.sock.shutdown(2)
        except OSError:
            pass
        self._conn.close()
        self._thread.join(timeout=5)


# --- Sessions ------------------------------------------------------------------------

class Streamable:
    """A Streamable HTTP session: `base` + `path`, with a bearer token or none."""

    def __init__(self, base: str, path: str, token: str | None, protocol: str = PROTOCOL):
        self.base, self.path, self.token, self.protocol = base, path, token, protocol
        self.session_id: str | None = None

    def headers(self, content_type: str | None = "application/json") -> list[tuple[str, str]]:
        headers = [("Accept", "application/json, text/event-stream")]
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        if self.session_id:
            headers.append(("Mcp-Session-Id", self.session_id))
            headers.append(("MCP-Protocol-Version", self.protocol))
        return headers

    def initialize(self) -> "Streamable":
        reply = self.post(initialize_message(0, self.protocol))
        assert reply.status == 200, (reply.status, reply.text())
        self.session_id = reply.header("mcp-session-id")
        assert self.session_id, reply.headers
        done = self.post(INITIALIZED)
        assert done.status in (200, 202), (done.status, done.text())
        return self

    def post(self, message: Any, content_type: str | None = "application/json",
             extra: list[tuple[str, str]] | None = None, method: str = "POST",
             target: str | None = None) -> Reply:
        return request(self.base, method, target or self.path,
                       self.headers(content_type) + (extra or []), encode(message))

    def call(self, name: str, arguments: dict | None = None, request_id: Any = 1) -> Reply:
        return self.post(tools_call(name, arguments, request_id))

    def stream(self, extra: list[tuple[str, str]] | None = None) -> EventStream:
        headers = [(k, v) for k, v in self.headers(None) if k != "Accept"]
        return EventStream(self.base, self.path,
                           [("Accept", "text/event-stream")] + headers + (extra or []))


class Legacy:
    """A legacy HTTP+SSE session: GET `sse_target`, then POSTs to the announced endpoint."""

    def __init__(self, base: str, sse_target: str, token: str | None,
                 extra: list[tuple[str, str]] | None = None):
        self.base, self.token = base, token
        auth = [("Authorization", f"Bearer {token}")] if token else []
        self.stream = EventStream(base, sse_target,
                                  [("Accept", "text/event-stream")] + auth + (extra or []))
        assert self.stream.status == 200, (self.stream.status, self.stream.raw_text())
        found = self.stream.wait(lambda: any(e.event == "endpoint" for e in self.stream.events))
        assert found, f"no endpoint event: {self.stream.raw_text()!r}"
        self.endpoint = next(e.data for e in self.stream.events if e.event == "endpoint")

    def session_param(self) -> tuple[str, str]:
        """(name, value) of the session parameter in the announced endpoint."""
        query = urllib.parse.urlsplit(self.endpoint).query
        ((name, value),) = urllib.parse.parse_qsl(query)
        return name, value

    def endpoint_path(self) -> str:
        return urllib.parse.urlsplit(self.endpoint).path

    def headers(self, content_type: str | None = "application/json") -> list[tuple[str, str]]:
        headers = [("Content-Type", content_type)] if content_type is not None else []
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        return headers

    def post(self, message: Any, content_type: str | None = "application/json",
             target: str | None = None, extra: list[tuple[str, str]] | None = None) -> Reply:
        return request(self.base, "POST", target or self.endpoint,
                       self.headers(content_type) + (extra or []), encode(message))

    def answer(self, request_id: Any, timeout: float = WAIT_S) -> Any:
        self.stream.wait(lambda: self.stream.message_with_id(request_id) is not None, timeout)
        return self.stream.message_with_id(request_id)

    def initialize(self) -> "Legacy":
        reply = self.post(initialize_message(0, "2024-11-05"))
        assert reply.status in (200, 202), (reply.status, reply.text())
        assert self.answer(0) is not None, self.stream.raw_text()
        done = self.post(INITIALIZED)
        assert done.status in (200, 202), (done.status, done.text())
        return self

    def close(self) -> None:
        self.stream.close()


# --- What the servers received and executed --------------------------------------------

@dataclass(frozen=True)
class ExecLog:
    path: Path

    def mark(self) -> int:
        """The log's current length: entries after it belong to what follows."""
        return self.path.stat().st_size

    def entries(self, since: int = 0) -> list[dict]:
        with open(self.path, "rb") as log:
            log.seek(since)
            lines = log.read().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def executions(self, since: int = 0, name: str | None = None) -> list[dict]:
        """Tool executions, prompt gets and resource reads (optionally of one name)."""
        found = [e for e in self.entries(since) if e.get("kind") in ("tool", "prompt", "resource")]
        return [e for e in found if name is None or e[e["kind"]] == name]

    def forbidden_executions(self, since: int = 0) -> list[dict]:
        return [e for e in self.executions(since) if e[e["kind"]] in FORBIDDEN_NAMES]

    def text(self, since: int = 0) -> str:
        """The raw log after `since`, for searching a secret anywhere in it."""
        with open(self.path, "rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", errors="replace")

    def requests(self, since: int = 0) -> list[dict]:
        return [e for e in self.entries(since) if e.get("kind") == "request"]

    def bodies(self, since: int = 0) -> list[dict]:
        return [e for e in self.entries(since) if e.get("kind") == "body"]

    def wait_for(self, condition: Callable[[list[dict]], bool], since: int = 0,
                 timeout: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self.entries(since)):
                return True
            time.sleep(0.02)  # polling a file: the condition, not the sleep, decides
        return condition(self.entries(since))

    def executed_marker(self, value: str, since: int = 0, timeout: float = WAIT_S) -> bool:
        return self.wait_for(lambda entries: any(
            value in json.dumps(e.get("args", {})) for e in entries
            if e.get("kind") == "tool"), since, timeout)


def barrier(server_base: str, log: ExecLog) -> None:
    """Make sure the server has logged everything it received before now: send it a request
    of our own (directly) and wait until that request is in its log."""
    target = f"/barrier/{uuid.uuid4().hex}"
    request(server_base, "GET", target, [])
    assert log.wait_for(lambda entries: any(e.get("url") == target for e in entries)), target


def header_pairs(entry: dict) -> list[tuple[str, str]]:
    raw = entry.get("headers", [])
    return [(raw[i].lower(), raw[i + 1]) for i in range(0, len(raw) - 1, 2)]
