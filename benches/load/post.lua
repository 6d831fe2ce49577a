-- wrk script for benches/load/run.sh: every request is the same MCP tools/call POST
-- (for (e) with the same Authorization and Mcp-Session-Id headers).
-- done() prints one machine-readable line (times in microseconds) that run.sh parses;
-- wrk's own --latency text is kept in the raw log next to it for reading.

wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"

-- run.sh --body-bytes: the same call with its argument padded, from a file.
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end

-- Target (e): run.sh passes the user's bearer token and the sealed session id.
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end
local session_id = os.getenv("BENCH_SESSION_ID")
if session_id and session_id ~= "" then
  wrk.headers["Mcp-Session-Id"] = session_id
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%.1f "
      .. "connect=%d read=%d write=%d timeout=%d non2xx=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status))
end
