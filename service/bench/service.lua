-- wrk script of `make bench-service`: checks or updates over `keys` keys (bench-user-0…),
-- prints one WRK_JSON line. Arguments after `--`: mode=check|update keys=N prefix=P
local mode, keys, prefix, counter = "check", 1000, "bench-user-", 0

function init(args)
  for _, a in ipairs(args) do
    local k, v = a:match("([^=]+)=(.*)")
    if k == "mode" then mode = v elseif k == "keys" then keys = tonumber(v) elseif k == "prefix" then prefix = v end
  end
end

function request()
  counter = counter + 1
  local key = prefix .. (counter % keys)
  if mode == "check" then
    return wrk.format("GET", "/ratelimit?ratelimit_keys=%5B%22" .. key .. "%22%5D")
  end
  return wrk.format("POST", "/update_ratelimit_record", { ["Content-Type"] = "application/json" },
    '{"ratelimit_keys":["' .. key .. '"],"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"duration_us":%d,"requests":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.duration, summary.requests, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
