#!/usr/bin/env python3
"""Idle-stream memory benchmark: how much resident memory drawbridge gains per idle SSE stream.

Goal (issue): 1,000 idle Server-Sent-Events streams add at most 50 MiB to the gateway.

One run, everything on 127.0.0.1:
  1. a stand-in MCP upstream (asyncio, in this process) answers `POST /mcp` with a small
     JSON-RPC result and `GET /mcp` with an endless `text/event-stream` (chunked): one
     comment event at once, then a keep-alive comment every 15 s until the peer leaves;
  2. drawbridge (`drawbridge run`, one worker, `RUST_LOG=warn`) proxies one public route
     to it; its configuration is generated in a temporary directory and validated first;
  3. warm-up: 200 `ping` POSTs and 10 streams opened and closed; then drawbridge's VmRSS
     (from /proc/<pid>/status) is the baseline;
  4. N streams are opened through drawbridge, each a `GET /mcp` on its own connection, at
     most 100 opening at a time; a stream counts once its status is 200 and its first
     event has arrived;
  5. after --keep-open seconds: VmRSS (loaded), the `drawbridge_active_streams` gauge
     from the admin `/metrics`, and the upstream's own count of open streams;
  6. all streams are closed; 2 s later: VmRSS and the gauge again.

The gain is rss_loaded - rss_base, reported in MiB and per stream. Exit status 0 when all
N streams opened and both drawbridge's gauge and the upstream count N of them; 1 otherwise.
drawbridge and the upstream are stopped, and the temporary directory removed, on every
exit path (errors, Ctrl-C, SIGTERM).
"""

import argparse
import asyncio
import contextlib
import ctypes
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

DEFAULT_BINARY = "/work/main/target/bench/release/drawbridge"
HOST = "127.0.0.1"
ROUTE = "bench"
OPEN_CONCURRENCY = 100
STREAM_OPEN_TIMEOUT = 10.0
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
SETTLE_AFTER_CLOSE = 2.0
KEEPALIVE_INTERVAL = 15.0
WARMUP_POSTS = 200
WARMUP_TIMEOUT = 30.0
WARMUP_STREAMS = 10
BUDGET_MIB_PER_1000 = 50.0
FIRST_EVENT = b": open\n\n"
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
PING_RESULT = b'{"jsonrpc":"2.0","id":1,"result":{}}'


class BenchError(Exception):
    """A failure that ends the run with a message and exit status 1."""


# ---------------------------------------------------------------- stand-in upstream


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def http_response(status: str, content_type: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The first line and the lower-cased header fields of a request or response head."""
    first, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, sep, value = field.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return first, headers


class Upstream:
    """The stand-in MCP server: keep-alive HTTP/1.1, JSON for POST, an idle SSE stream for GET."""

    def __init__(self) -> None:
        self.open_streams = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self, port: int) -> int:
        self.server = await asyncio.start_server(self.handle, HOST, port, backlog=4096)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while await self.serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answers one request; False when the connection is done."""
        request_line, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0]
        await reader.readexactly(int(headers.get("content-length", "0")))
        if path != "/mcp":
            writer.write(http_response("404 Not Found", "text/plain", b"not found\n"))
        elif method == "POST":
            writer.write(http_response("200 OK", "application/json", PING_RESULT))
        elif method == "GET":
            await self.stream(reader, writer)
            return False
        else:
            writer.write(http_response("405 Method Not Allowed", "text/plain", b"no\n"))
        await writer.drain()
        return True

    async def stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """An idle event stream: one event now, a comment every 15 s, until the peer leaves."""
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(FIRST_EVENT)
        )
        await writer.drain()
        self.open_streams += 1
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(4096), KEEPALIVE_INTERVAL)
                except TimeoutError:
                    writer.write(chunk(b": keep-alive\n\n"))
                    await writer.drain()
                    continue
                if not data:  # the peer closed (or this script is stopping)
                    return
        finally:
            self.open_streams -= 1


# ---------------------------------------------------------------- drawbridge process


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ensure_free(port: int) -> None:
    """Refuses a --port-base port that is taken: drawbridge would retry binding it for
    ever, and its /readyz answers 200 meanwhile."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise BenchError(f"{HOST}:{port} is not free: {e.strerror}") from None


def write_config(path: Path, port: int, admin_port: int, upstream_port: int) -> None:
    path.write_text(
        f"""listen: {HOST}:{port}
admin:
  listen: {HOST}:{admin_port}
workers: 1
routes:
  - name: {ROUTE}
    match: {{ path: /mcp }}
    public_url: http://{HOST}:{port}/mcp
    upstream:
      url: http://{HOST}:{upstream_port}/mcp
"""
    )


def validate_config(binary: str, config: Path) -> None:
    result = subprocess.run(
        [binary, "validate", str(config)], capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        raise BenchError(f"generated {config.name} does not validate:\n{output}")


PR_SET_PDEATHSIG = 1
prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it when this script dies, even by SIGKILL."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_drawbridge(binary: str, config: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, RUST_LOG="warn")
    with log.open("wb") as out:
        return subprocess.Popen(
            [binary, "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            preexec_fn=die_with_parent,
        )


async def stop_drawbridge(proc: subprocess.Popen) -> None:
    """SIGINT, then SIGKILL if it has not exited within STOP_TIMEOUT."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if proc.poll() is None:
        print(f"drawbridge (pid {proc.pid}) ignored SIGINT for {STOP_TIMEOUT:.0f} s: killed")
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


async def accepts(port: int) -> bool:
    with contextlib.suppress(OSError):
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2)
        writer.close()
        return True
    return False


async def wait_ready(proc: subprocess.Popen, port: int, admin_port: int) -> None:
    """Until /readyz answers 200 and the proxy listener accepts connections (/readyz
    may turn 200 before the proxy listener is bound)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"drawbridge exited with status {proc.returncode} while starting")
        with contextlib.suppress(OSError):
            status, _ = await asyncio.to_thread(http_get, f"http://{HOST}:{admin_port}/readyz")
            if status == 200 and await accepts(port):
                return
        await asyncio.sleep(0.1)
    raise BenchError(
        f"drawbridge not ready (/readyz 200, :{port} accepting) within {READY_TIMEOUT:.0f} s"
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS in /proc/{pid}/status")


async def active_streams_gauge(admin_port: int) -> int | None:
    """drawbridge_active_streams for the bench route, or None when it is not exported."""
    _, text = await asyncio.to_thread(http_get, f"http://{HOST}:{admin_port}/metrics")
    prefix = f'drawbridge_active_streams{{route="{ROUTE}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return int(float(line[len(prefix):]))
    return None


def log_lines(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines() if log.exists() else []


# ---------------------------------------------------------------- client side


async def post_pings(port: int, count: int) -> None:
    """`count` ping POSTs, one after another on one keep-alive connection."""
    request = (
        f"POST /mcp HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Length: {len(PING)}\r\n\r\n"
    ).encode() + PING
    writer = None
    try:
        async with asyncio.timeout(WARMUP_TIMEOUT):
            reader, writer = await asyncio.open_connection(HOST, port)
            for i in range(count):
                writer.write(request)
                status_line, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
                body = await read_body(reader, headers)
                if status_line.split()[1] != "200":
                    raise BenchError(f"warm-up POST {i + 1}: {status_line}: {body[:200]!r}")
    except TimeoutError:
        raise BenchError(f"warm-up POSTs not done within {WARMUP_TIMEOUT:.0f} s") from None
    finally:
        if writer is not None:
            writer.close()


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """A whole response body, framed by Content-Length or chunked."""
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        return await reader.readexactly(int(headers.get("content-length", "0")))
    body = b""
    while size := await read_chunk_size(reader):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")  # the empty trailer
    return body


async def read_chunk_size(reader: asyncio.StreamReader) -> int:
    line = await reader.readuntil(b"\r\n")
    return int(line.split(b";")[0], 16)


async def read_first_event(reader: asyncio.StreamReader, chunked: bool) -> None:
    """Reads the stream until one whole event (ending in a blank line) has arrived."""
    seen = b""
    while b"\n\n" not in seen:
        if chunked:
            size = await read_chunk_size(reader)
            if size == 0:
                raise BenchError("stream ended before its first event")
            seen += (await reader.readexactly(size + 2))[:-2]
        else:
            data = await reader.read(4096)
            if not data:
                raise BenchError("stream closed before its first event")
            seen += data


async def open_stream(port: int) -> asyncio.StreamWriter:
    """A GET /mcp event stream through drawbridge, open once its first event has arrived."""
    writer = None
    opened = False
    try:
        async with asyncio.timeout(STREAM_OPEN_TIMEOUT):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(
                f"GET /mcp HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            status_line, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
            if status_line.split()[1] != "200":
                raise BenchError(f"status {status_line.split(' ', 1)[1]}")
            chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            await read_first_event(reader, chunked)
            opened = True
            return writer
    except TimeoutError:
        raise BenchError(f"not open within {STREAM_OPEN_TIMEOUT:.0f} s") from None
    finally:
        if writer is not None and not opened:
            writer.close()


def describe(e: BaseException) -> str:
    if isinstance(e, BenchError):
        return str(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


async def open_streams(
    port: int, count: int, streams: list[asyncio.StreamWriter], timeout: float
) -> Counter:
    """Opens `count` streams (at most OPEN_CONCURRENCY at a time) into `streams`;
    returns the failures by reason."""
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one() -> asyncio.StreamWriter:
        async with gate:
            return await open_stream(port)

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    failures = Counter()
    for task in done:
        if task.exception() is None:
            streams.append(task.result())
        else:
            failures[describe(task.exception())] += 1
    if pending:
        failures[f"not open within the total {timeout:.0f} s"] += len(pending)
    return failures


def close_streams(streams: list[asyncio.StreamWriter]) -> None:
    for writer in streams:
        writer.close()
    streams.clear()


# ---------------------------------------------------------------- run and report


def raise_fd_limit(needed: int) -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (drawbridge inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(
            f"RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors this run needs "
            f"(raise it with `ulimit -Hn` as root, or use fewer --streams)"
        )
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(args: argparse.Namespace) -> dict:
    """The whole measurement; returns the results for the report."""
    if args.port_base:
        upstream_port, port, admin_port = args.port_base, args.port_base + 1, args.port_base + 2
        ensure_free(port)
        ensure_free(admin_port)
    else:
        upstream_port, port, admin_port = 0, free_port(), free_port()
    upstream = Upstream()
    streams: list[asyncio.StreamWriter] = []
    proc = None
    with tempfile.TemporaryDirectory(prefix="idle-streams-") as tmp:
        config, log = Path(tmp, "gateway.yaml"), Path(tmp, "drawbridge.log")
        try:
            upstream_port = await upstream.start(upstream_port)
            write_config(config, port, admin_port, upstream_port)
            validate_config(args.drawbridge, config)
            proc = start_drawbridge(args.drawbridge, config, log)
            await wait_ready(proc, port, admin_port)
            r = {"pid": proc.pid, "ports": (port, admin_port, upstream_port)}

            await post_pings(port, WARMUP_POSTS)
            warm = await open_streams(port, WARMUP_STREAMS, streams, 2 * STREAM_OPEN_TIMEOUT)
            if warm:
                raise BenchError(f"warm-up streams failed: {dict(warm)}")
            close_streams(streams)
            await asyncio.sleep(SETTLE_AFTER_CLOSE)
            r["rss_base"] = rss_kib(proc.pid)
            r["gauge_base"] = await active_streams_gauge(admin_port)

            started = time.monotonic()
            total_timeout = 30 + args.streams * 0.05
            r["failures"] = await open_streams(port, args.streams, streams, total_timeout)
            r["opened"] = len(streams)
            r["open_seconds"] = time.monotonic() - started
            await asyncio.sleep(args.keep_open)
            r["rss_loaded"] = rss_kib(proc.pid)
            r["gauge_loaded"] = await active_streams_gauge(admin_port)
            r["upstream_loaded"] = upstream.open_streams

            close_streams(streams)
            await asyncio.sleep(SETTLE_AFTER_CLOSE)
            r["rss_closed"] = rss_kib(proc.pid)
            r["gauge_closed"] = await active_streams_gauge(admin_port)
            r["upstream_closed"] = upstream.open_streams
            if proc.poll() is not None:
                raise BenchError(f"drawbridge exited with status {proc.returncode} during the run")
            return r
        finally:
            close_streams(streams)
            if proc is not None:
                await stop_drawbridge(proc)
            await upstream.stop()
            # Read before the directory goes: the report shows what drawbridge logged.
            args.log_lines = log_lines(log)


def report(args: argparse.Namespace, r: dict) -> list[str]:
    """Prints the human report and the IDLE_STREAMS line; returns the failed checks."""
    n = args.streams
    added_kib = r["rss_loaded"] - r["rss_base"]
    added_mib = added_kib / 1024
    per_stream = added_kib / r["opened"] if r["opened"] else 0.0
    budget = BUDGET_MIB_PER_1000 * n / 1000
    verdict = "within" if added_mib <= budget else "OVER"
    closed_mib = (r["rss_closed"] - r["rss_base"]) / 1024
    port, admin_port, upstream_port = r["ports"]
    print(f"drawbridge {args.drawbridge} (pid {r['pid']})")
    print(f"ports:            listen {port}, admin {admin_port}, upstream {upstream_port}")
    print(f"streams opened:   {r['opened']}/{n} in {r['open_seconds']:.1f} s")
    for reason, count in r["failures"].most_common():
        print(f"  not opened: {count} x {reason}")
    print(f"RSS baseline:     {r['rss_base']} KiB (after warm-up; gauge {r['gauge_base']})")
    print(f"RSS with streams: {r['rss_loaded']} KiB after {args.keep_open:g} s idle")
    print(f"RSS after close:  {r['rss_closed']} KiB ({closed_mib:+.1f} MiB vs baseline)")
    print(f"added:            {added_mib:.1f} MiB, {per_stream:.1f} KiB per stream")
    print(f"budget:           {BUDGET_MIB_PER_1000:g} MiB per 1,000 streams, "
          f"{budget:.1f} MiB for {n}: {verdict}")
    print(f"active_streams:   {r['gauge_loaded']} with streams, {r['gauge_closed']} after close")
    print(f"upstream streams: {r['upstream_loaded']} with streams, "
          f"{r['upstream_closed']} after close")
    print(
        f"IDLE_STREAMS streams={n} opened={r['opened']} rss_base_kib={r['rss_base']} "
        f"rss_loaded_kib={r['rss_loaded']} rss_closed_kib={r['rss_closed']} "
        f"added_mib={added_mib:.1f} per_stream_kib={per_stream:.1f} "
        f"active_streams_gauge={r['gauge_loaded']} gauge_after_close={r['gauge_closed']} "
        f"upstream_open={r['upstream_loaded']} upstream_open_after_close={r['upstream_closed']}"
    )
    if r["gauge_closed"] != 0:
        print(f"warning: drawbridge_active_streams still {r['gauge_closed']} "
              f"{SETTLE_AFTER_CLOSE:g} s after every stream closed")
    failed = []
    if r["opened"] != n:
        failed.append(f"only {r['opened']} of {n} streams opened")
    if r["gauge_loaded"] != n:
        failed.append(f"drawbridge_active_streams was {r['gauge_loaded']}, not {n}")
    if r["upstream_loaded"] != n:
        failed.append(f"the upstream held {r['upstream_loaded']} streams, not {n}")
    return failed


def print_log(lines: list[str]) -> None:
    """drawbridge's log, timestamps and colours removed, identical lines counted once."""
    if not lines:
        return
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    messages = Counter(ansi.sub("", line).partition(" ")[2].strip() for line in lines)
    print(f"drawbridge log (RUST_LOG=warn): {len(lines)} lines, {len(messages)} distinct:")
    for message, count in messages.most_common(10):
        print(f"  {count:5d} x {message}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Resident memory drawbridge gains while it holds N idle SSE streams "
        "(goal: 1,000 streams add <= 50 MiB)."
    )
    p.add_argument("--streams", type=int, default=1000, metavar="N",
                   help="idle streams to hold (default 1000)")
    p.add_argument("--drawbridge", default=DEFAULT_BINARY, metavar="PATH",
                   help=f"drawbridge binary (default {DEFAULT_BINARY})")
    p.add_argument("--port-base", type=int, default=0, metavar="P",
                   help="upstream on P, drawbridge on P+1, admin on P+2 (default: free ports)")
    p.add_argument("--keep-open", type=float, default=3.0, metavar="SECONDS",
                   help="how long the streams stay idle before RSS is read (default 3)")
    args = p.parse_args()
    if args.streams < 1:
        p.error("--streams must be at least 1")
    if not os.access(args.drawbridge, os.X_OK):
        p.error(f"no executable drawbridge at {args.drawbridge}")
    args.log_lines = []
    return args


async def main_task(args: argparse.Namespace) -> dict:
    """run(), cancelled (so that its cleanup runs) on SIGTERM."""
    task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(args)


def main() -> int:
    args = parse_args()
    try:
        # This process holds both ends of every stream: 2 descriptors per stream.
        raise_fd_limit(2 * args.streams + 256)
        results = asyncio.run(main_task(args))
    except (BenchError, OSError, asyncio.IncompleteReadError) as e:
        print_log(args.log_lines)
        print(f"idle_streams: FAILED: {describe(e)}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("idle_streams: interrupted", file=sys.stderr)
        return 130
    failed = report(args, results)
    print_log(args.log_lines)
    for reason in failed:
        print(f"idle_streams: FAILED: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
