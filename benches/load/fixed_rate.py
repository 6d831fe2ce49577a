#!/usr/bin/env python3
"""Open-loop, fixed-rate HTTP/1.1 load generator: latency well below saturation.

wrk (benches/load/run.sh) runs a closed loop: each connection sends its next request
only once the previous answer is in. That measures throughput, but not the latency a
client sees: while the server stalls, wrk stops sending, so the requests that would have
been sent during the stall are never timed ("coordinated omission"). This script
measures latency the way wrk2 does:

- Open loop: request i is scheduled at start + i / rate, whatever happened before. A
  scheduler task puts every request whose time has come on a queue.
- A pool of --connections persistent (keep-alive) HTTP/1.1 connections, each with one
  request in flight at most, takes the requests off the queue in order. When every
  connection is busy, a request waits in the queue.
- Latency runs from the request's scheduled time to the moment its response has been
  read completely, so a stall (of the server, or of this generator) counts for every
  request queued behind it. It is split into the send delay (scheduled -> taken off
  the queue: waiting for a free connection, plus this generator's own lateness) and
  the service time (taken off the queue -> answered: what a closed-loop tool reports).
- The generator's CPU time per request and the share of the run it was running (or,
  on Linux, waiting for a CPU) tell whether the generator itself was the bottleneck.

Warm-up requests (--warmup seconds at the same rate, before the measured ones) are not
recorded. The run is bounded: connecting takes CONNECT_TIMEOUT_S at most, and responses
still missing GRACE_S seconds after the last scheduled request count as errors.

The event loop waits with select() rather than epoll: epoll_wait rounds its timeout up to
whole milliseconds, which would send requests up to 1 ms late at random (and count that
as latency); select() takes microseconds.

Output: a human summary, warnings on stderr, and a final machine-readable line starting
with FIXED_RATE (times in microseconds). Exit status 0 when every measured request got a
2xx answer, 1 otherwise (or when nothing could be sent), 2 for usage errors.
"""

import argparse
import asyncio
import collections
import math
import os
import selectors
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_BODY = (
    '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
    '"params":{"name":"echo","arguments":{"message":"hi"}}}'
)
DEFAULT_HEADERS = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
]
# Environment variable -> header, sent when the variable is non-empty (as post.lua does).
ENV_HEADERS = [
    ("BENCH_AUTHORIZATION", "Authorization"),
    ("BENCH_SESSION_ID", "Mcp-Session-Id"),
]
GRACE_S = 10.0  # how long to wait for outstanding responses after the last request
CONNECT_TIMEOUT_S = 5.0  # for opening the pool before the run
MAX_CONNECTIONS = 500  # select() only handles file descriptors below 1024
SHORTFALL = 0.95  # warn when the send rate is below this fraction of the target
CPU_BUSY_WARN = 0.90  # warn when the generator ran (or waited to run) this much of the time


@dataclass
class Target:
    host: str
    port: int
    request: bytes  # the whole request, sent as is every time
    head_only: bool  # HEAD: responses carry no body


@dataclass
class Stats:
    """What one run measured; times from time.perf_counter_ns()."""

    latency_ns: list = field(default_factory=list)  # scheduled -> response read
    send_delay_ns: list = field(default_factory=list)  # scheduled -> taken off the queue
    service_ns: list = field(default_factory=list)  # taken off the queue -> response read
    sent: int = 0  # measured requests taken off the queue by a connection
    last_sent_ns: int = 0
    last_dispatch_ns: int = 0  # when the scheduler queued the last request
    taken_all: int = 0  # requests taken off the queue, warm-up included
    ok: int = 0
    non2xx: collections.Counter = field(default_factory=collections.Counter)
    connection_errors: int = 0
    first_error: str = ""
    window_start_ns: int = 0  # scheduled time of the first measured request
    wall_s: float = 0.0  # from the first request to the end of the run
    cpu_s: float = 0.0  # this process's CPU time (user + system) over wall_s
    waiting_s: float | None = None  # time spent runnable but waiting for a CPU (Linux)


# --- command line ---------------------------------------------------------------------


class SetupError(Exception):
    """The run could not start (the target cannot be reached)."""


def number(minimum, inclusive):
    """An argparse type: a finite number above (or, inclusive, at least) minimum."""
    relation = ">=" if inclusive else ">"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r}: want a number {relation} {minimum:g}")
        return value

    return parse


def make_parser():
    p = argparse.ArgumentParser(
        description="Open-loop, fixed-rate HTTP/1.1 load generator. Latency is measured "
        "from each request's scheduled time (no coordinated omission).",
        epilog="Default body: an MCP tools/call of the echo tool. BENCH_AUTHORIZATION and "
        "BENCH_SESSION_ID, when set and non-empty, are sent as the Authorization and "
        "Mcp-Session-Id headers; --header overrides any header. Exit status: 0 when "
        "every measured request got a 2xx answer, 1 otherwise.",
    )
    p.add_argument("url", help="http://host[:port]/path (plain HTTP)")
    p.add_argument("--rate", type=number(0, False), required=True,
                   help="requests per second")
    p.add_argument("--duration", type=number(0, False), required=True,
                   help="seconds of measured requests")
    p.add_argument("--connections", type=int, default=16,
                   help=f"keep-alive connections, 1..{MAX_CONNECTIONS} (default 16)")
    p.add_argument("--warmup", type=number(0, True), default=1.0,
                   help="seconds of unrecorded requests first, same rate (default 1)")
    p.add_argument("--method", default="POST", help="request method (default POST)")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="add or replace a request header (repeatable)")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", help="request body (default: an MCP tools/call for "
                      "POST, none for other methods)")
    body.add_argument("--body-file", metavar="F", help="read the request body from F")
    return p


def make_target(args):
    """Builds the request bytes once; raises ValueError or OSError for bad arguments."""
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"URL must be http://host[:port]/path, not {args.url!r}")
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    method = args.method.upper()
    if args.body_file is not None:
        with open(args.body_file, "rb") as f:
            body = f.read()
    elif args.body is not None:
        body = args.body.encode()
    else:
        body = DEFAULT_BODY.encode() if method == "POST" else b""

    headers = {"host": ("Host", url.netloc.rpartition("@")[2])}
    for name, value in DEFAULT_HEADERS:
        headers[name.lower()] = (name, value)
    for variable, name in ENV_HEADERS:
        if os.environ.get(variable):
            headers[name.lower()] = (name, os.environ[variable])
    for line in args.header:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"--header wants 'Name: value', not {line!r}")
        headers[name.strip().lower()] = (name.strip(), value.strip())
    if body or method not in ("GET", "HEAD"):
        headers["content-length"] = ("Content-Length", str(len(body)))

    head = f"{method} {path} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.values()) + "\r\n"
    return Target(url.hostname, url.port or 80, head.encode("latin-1") + body,
                  method == "HEAD")


# --- HTTP/1.1 client ------------------------------------------------------------------


def parse_status_line(line):
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line {line[:80]!r}")
    return parts[0], int(parts[1])


async def read_chunked(reader):
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        await reader.readexactly(size + 2)  # the data and its CRLF
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields up to the blank line
        pass


async def read_response(reader, head_only):
    """Reads one whole response; returns (status, whether the connection stays open)."""
    status = 100
    while 100 <= status < 200:  # skip interim (1xx) responses
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].split(b"\r\n")
        version, status = parse_status_line(status_line)
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    connection = headers.get(b"connection", b"")
    if version == b"HTTP/1.0":
        keep_alive = b"keep-alive" in connection
    else:
        keep_alive = b"close" not in connection

    if head_only or status in (204, 304):
        pass
    elif b"chunked" in headers.get(b"transfer-encoding", b""):
        await read_chunked(reader)
    elif b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    else:  # the body ends when the server closes the connection
        await reader.read()
        keep_alive = False
    return status, keep_alive


class Connection:
    """One keep-alive connection to the target, (re-)opened when needed."""

    def __init__(self, target):
        self.target = target
        self.streams = None  # (reader, writer) while open

    def is_open(self):
        return self.streams is not None and not self.streams[0].at_eof()

    async def open(self):
        self.close()
        self.streams = await asyncio.open_connection(self.target.host, self.target.port)
        # The size of asyncio's recv() buffer: with the default (256 KiB) every recv()
        # allocates a fresh buffer by mmap and shrinks it by mremap, which cost ~40 us of
        # CPU per request in a VM. Our responses fit in 16 KiB (larger ones take more reads).
        self.streams[1].transport.max_size = 16384

    def close(self):
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None

    async def request(self):
        """Sends the request, reads the whole answer and returns its status.

        When a connection that was kept alive fails before any byte of the answer (the
        server closed it meanwhile), the request is sent once more on a new connection.
        """
        reused = self.is_open()
        try:
            return await self._exchange()
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            if not reused or getattr(e, "partial", b""):
                raise
        return await self._exchange()

    async def _exchange(self):
        if not self.is_open():
            await self.open()
        reader, writer = self.streams
        try:
            writer.write(self.target.request)
            await writer.drain()
            status, keep_alive = await read_response(reader, self.target.head_only)
        except BaseException:
            self.close()
            raise
        if not keep_alive:
            self.close()
        return status


# --- load -----------------------------------------------------------------------------


async def schedule(queue, start_ns, period_ns, n_warmup, n_total, stats):
    """Queues request i at start + i * period; every request already due goes at once."""
    for i in range(n_total):
        due = start_ns + round(i * period_ns)
        delay = due - time.perf_counter_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        queue.put_nowait((due, i >= n_warmup))
    stats.last_dispatch_ns = time.perf_counter_ns()


async def worker(connection, queue, stats):
    """Serves queued requests on one connection, one at a time, until it gets None."""
    try:
        while (job := await queue.get()) is not None:
            scheduled_ns, measured = job
            taken_ns = time.perf_counter_ns()
            stats.taken_all += 1
            if measured:
                stats.sent += 1
                stats.last_sent_ns = taken_ns
            try:
                status = await connection.request()
            except (OSError, EOFError, asyncio.LimitOverrunError, ValueError) as e:
                if measured:
                    stats.connection_errors += 1
                    stats.first_error = stats.first_error or f"{type(e).__name__}: {e}"
                continue
            if not measured:
                continue
            done_ns = time.perf_counter_ns()
            stats.latency_ns.append(done_ns - scheduled_ns)
            stats.service_ns.append(done_ns - taken_ns)
            stats.send_delay_ns.append(taken_ns - scheduled_ns)
            if 200 <= status < 300:
                stats.ok += 1
            else:
                stats.non2xx[status] += 1
    finally:
        connection.close()


def runqueue_wait_ns():
    """How long this thread has been runnable but not running, from Linux schedstat."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


async def run(target, args, n_warmup, n_measured):
    """Opens the connections, runs the load and returns its Stats."""
    connections = [Connection(target) for _ in range(args.connections)]
    try:
        opened = await asyncio.wait_for(
            asyncio.gather(*(c.open() for c in connections), return_exceptions=True),
            CONNECT_TIMEOUT_S)
        failure = next((r for r in opened if isinstance(r, Exception)), None)
    except TimeoutError:
        failure = f"no connection within {CONNECT_TIMEOUT_S:g} s"
    if failure is not None:
        for c in connections:
            c.close()
        raise SetupError(f"cannot connect to {target.host}:{target.port}: {failure}")

    stats = Stats()
    queue = asyncio.Queue()
    period_ns = 1e9 / args.rate
    n_total = n_warmup + n_measured
    cpu_start = time.process_time()
    wait_start_ns = runqueue_wait_ns()
    start_ns = time.perf_counter_ns()
    workers = [asyncio.create_task(worker(c, queue, stats)) for c in connections]

    async def drive():
        await schedule(queue, start_ns, period_ns, n_warmup, n_total, stats)
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)

    deadline_ns = start_ns + round(n_total * period_ns + GRACE_S * 1e9)
    try:
        await asyncio.wait_for(drive(), (deadline_ns - time.perf_counter_ns()) / 1e9)
    except TimeoutError:
        pass  # requests still unanswered count as errors
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    stats.wall_s = (time.perf_counter_ns() - start_ns) / 1e9
    stats.cpu_s = time.process_time() - cpu_start
    wait_end_ns = runqueue_wait_ns()
    if wait_start_ns is not None and wait_end_ns is not None:
        stats.waiting_s = (wait_end_ns - wait_start_ns) / 1e9
    stats.window_start_ns = start_ns + round(n_warmup * period_ns)
    return stats


def new_event_loop():
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


# --- report ---------------------------------------------------------------------------


def percentile_us(sorted_ns, p):
    """Nearest-rank percentile, in whole microseconds ("-" when there are no values)."""
    if not sorted_ns:
        return "-"
    rank = max(1, math.ceil(p / 100 * len(sorted_ns)))
    return round(sorted_ns[rank - 1] / 1000)


def rate_over_window(count, last_ns, window_start_ns, duration_s):
    """count per second over the measured window, or until last_ns if that is later."""
    return count / max(duration_s, (last_ns - window_start_ns) / 1e9)


def report(args, stats, n_measured):
    """Prints the summary and the FIXED_RATE line; returns the exit status."""
    latency = sorted(stats.latency_ns)
    send_delay = sorted(stats.send_delay_ns)
    service = sorted(stats.service_ns)
    non2xx = sum(stats.non2xx.values())
    unanswered = n_measured - stats.ok - non2xx - stats.connection_errors
    errors = stats.connection_errors + unanswered
    sent_rps = rate_over_window(stats.sent, stats.last_sent_ns, stats.window_start_ns,
                                args.duration)
    dispatch_rps = rate_over_window(n_measured, stats.last_dispatch_ns,
                                    stats.window_start_ns, args.duration)
    cpu_us_per_req = stats.cpu_s * 1e6 / stats.taken_all if stats.taken_all else 0.0
    busy = stats.cpu_s / stats.wall_s
    # Running or waiting to run: near 100 %, the generator's own delays (its CPU work, or
    # waiting for a CPU other processes hold) are part of the latencies.
    demand = None if stats.waiting_s is None else busy + stats.waiting_s / stats.wall_s
    pct = {p: percentile_us(latency, p) for p in (50, 90, 99, 99.9, 100)}

    print(f"fixed rate: {args.method.upper()} {args.url} at {args.rate:g}/s for "
          f"{args.duration:g} s (warm-up {args.warmup:g} s), {args.connections} connections")
    print(f"  measured {n_measured} requests: {stats.ok} 2xx, {non2xx} non-2xx, "
          f"{errors} errors ({stats.connection_errors} connection errors, "
          f"{unanswered} unanswered after the {GRACE_S:g} s grace)")
    if stats.non2xx:
        print("  non-2xx statuses: "
              + ", ".join(f"{s} x{n}" for s, n in sorted(stats.non2xx.items())))
    if stats.first_error:
        print(f"  first connection error: {stats.first_error}")
    print(f"  sent {sent_rps:.1f}/s of the {args.rate:g}/s target")
    print("  latency (scheduled -> answered), us: "
          + "  ".join(f"p{p:g} {v}" for p, v in pct.items() if p < 100)
          + f"  max {pct[100]}")
    for name, values in (("send delay (scheduled -> sent)", send_delay),
                         ("service time (sent -> answered; closed-loop view)", service)):
        print(f"  {name}, us: p50 {percentile_us(values, 50)}  "
              f"p99 {percentile_us(values, 99)}  max {percentile_us(values, 100)}")
    print(f"  client CPU: {cpu_us_per_req:.1f} us per request; running {busy:.0%} of the "
          "time" + ("" if demand is None else f", running or waiting for a CPU {demand:.0%}"))

    cpu_share = demand if demand is not None else busy
    saturated = (f"the generator was running or waiting for a CPU {cpu_share:.0%} of the "
                 "time" if cpu_share >= CPU_BUSY_WARN else None)
    if sent_rps < SHORTFALL * args.rate:
        if dispatch_rps < SHORTFALL * args.rate:
            cause = "its scheduler fell behind"
        elif saturated:
            cause = f"requests waited for a free connection; {saturated}"
        else:
            cause = ("requests waited for a free connection: the target is saturated or "
                     "--connections too low")
        print(f"WARNING: generator could not keep up: sent {sent_rps:.1f}/s of the "
              f"{args.rate:g}/s target; {cause}", file=sys.stderr)
    elif saturated:
        print(f"WARNING: {saturated}: its own delays are part of the latencies",
              file=sys.stderr)

    print(f"FIXED_RATE url={args.url} rate={args.rate:g} duration_s={args.duration:g} "
          f"connections={args.connections} scheduled={n_measured} sent={stats.sent} "
          f"ok={stats.ok} non2xx={non2xx} errors={errors} unanswered={unanswered} "
          f"achieved_rps={sent_rps:.1f} p50_us={pct[50]} p90_us={pct[90]} "
          f"p99_us={pct[99]} p999_us={pct[99.9]} max_us={pct[100]} "
          f"send_delay_p50_us={percentile_us(send_delay, 50)} "
          f"send_delay_p99_us={percentile_us(send_delay, 99)} "
          f"service_p50_us={percentile_us(service, 50)} "
          f"service_p99_us={percentile_us(service, 99)} "
          f"client_cpu_us_per_req={cpu_us_per_req:.1f} client_busy_pct={busy * 100:.0f} "
          f"client_demand_pct={'-' if demand is None else f'{demand * 100:.0f}'}")
    return 0 if stats.sent and stats.ok == n_measured else 1


def main():
    parser = make_parser()
    args = parser.parse_args()
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be between 1 and {MAX_CONNECTIONS}")
    n_warmup = round(args.warmup * args.rate)
    n_measured = round(args.duration * args.rate)
    if n_measured < 1:
        parser.error("--rate x --duration must come to at least one request")
    try:
        target = make_target(args)
    except (ValueError, OSError) as e:
        parser.error(str(e))

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            stats = runner.run(run(target, args, n_warmup, n_measured))
    except SetupError as e:
        print(f"fixed_rate.py: {e}; nothing was sent", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return report(args, stats, n_measured)


if __name__ == "__main__":
    sys.exit(main())
