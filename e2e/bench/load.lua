-- wrk script for the Envoy benchmarks (e2e/bench/envoy-bench.ts runs it).
-- Arguments after `--`: mode=chat|check (check: GET /ratelimit straight to the service) host=<Host header> keys=<N distinct user-type values> rate=<requests/s per thread, 0 = as fast as possible> stop=<requests per thread, 0 = run for -d>
-- Every request is the seed's chat completion POST (with a "model", for keys read from the body);
-- `user-type: bench-<thread>-<i>` rotates over N keys
-- so that matched requests are each a check + report on a bucket that never runs out.
-- done() prints one JSON line (latencies in microseconds) for the bench to parse.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local thread_id = 0
local counter = 0
function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end

local reqs = {}
local n = 0
local i = 0
local interval = 0 -- ms between request slots (fixed rate)
local next_slot = nil
local stop_after = 0
local seen = 0

function init(args)
  local opt = { host = "dashscope.aliyuncs.com", keys = "1000", rate = "0", stop = "0", mode = "chat" }
  for _, a in ipairs(args) do
    local k, v = a:match("^(%w+)=(.*)$")
    if k then opt[k] = v end
  end
  local body = '{"model":"qwen-plus","messages":[{"role":"user","content":"介绍一下你自己"}]}'
  n = tonumber(opt.keys)
  for k = 1, n do
    if opt.mode == "check" then
      -- The service alone: the check the plugin makes for a matched request (GET /ratelimit).
      reqs[k] = wrk.format("GET", string.format("/ratelimit?ratelimit_keys=%%5B%%22bench-%d-%d%%22%%5D", thread_id, k), { ["Host"] = "ratelimit" }, nil)
    else
    reqs[k] = wrk.format("POST", "/", {
      ["Host"] = opt.host,
      ["Content-Type"] = "application/json",
      ["user-type"] = string.format("bench-%d-%d", thread_id, k),
    }, body)
    end
  end
  local rate = tonumber(opt.rate)
  if rate > 0 then
    interval = 1000 / rate
    delay = paced_delay -- only when pacing: with a delay() wrk schedules every request on a timer
  end
  stop_after = tonumber(opt.stop)
  if stop_after > 0 then
    -- Only defined when needed: a response() makes wrk parse every response.
    response = function(status)
      seen = seen + 1
      if seen == stop_after then wrk.thread:stop() end
    end
  end
end

function request()
  i = i % n + 1
  return reqs[i]
end

-- Fixed rate: each completed response books the next free slot on one schedule for the thread,
-- so the offered rate stays at `rate` however long responses take (while connections suffice).
function paced_delay()
  local t = now_ms()
  if next_slot == nil or next_slot < t - 1000 then next_slot = t end
  next_slot = next_slot + interval
  local d = next_slot - t
  if d < 0 then return 0 end
  return math.floor(d + 0.5)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
end
