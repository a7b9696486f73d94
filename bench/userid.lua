-- userid.lua: wrk script for bench/run.sh. Every request carries
-- X-User-ID set to a random user id in 1..BENCH_USERS (default 1000000, the
-- users of the table bench/mktable writes), so proxies hash a different key
-- each time. At the end it prints one machine-readable line for run.sh.

local users = tonumber(os.getenv("BENCH_USERS") or "") or 1000000
local headers = {}

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

function request()
  headers["X-User-ID"] = tostring(math.random(1, users))
  return wrk.format("GET", "/feed", headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
