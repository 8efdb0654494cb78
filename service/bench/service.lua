-- wrk script of `make bench-service`: checks or updates over `keys` keys (bench-user-0…),
-- prints one WRK_JSON line. Arguments after `--`: mode=check|update keys=N prefix=P [token=T]
-- (token: sent as `Authorization: Bearer T`, for a service with SERVICE_TOKENS)
local mode, keys, prefix, token, counter = "check", 1000, "bench-user-", nil, 0

local reqs = {}

-- Every request is built once here: building it per request in Lua costs wrk about as much CPU
-- as the service spends answering it, and on a shared machine that CPU is taken from the service.
function init(args)
  for _, a in ipairs(args) do
    local k, v = a:match("([^=]+)=(.*)")
    if k == "mode" then mode = v elseif k == "keys" then keys = tonumber(v) elseif k == "prefix" then prefix = v
    elseif k == "token" then token = v end
  end
  local auth = token and { ["Authorization"] = "Bearer " .. token } or {}
  for i = 0, keys - 1 do
    local key = prefix .. i
    if mode == "check" then
      reqs[i + 1] = wrk.format("GET", "/ratelimit?ratelimit_keys=%5B%22" .. key .. "%22%5D", auth)
    else
      local h = { ["Content-Type"] = "application/json" }
      if token then h["Authorization"] = auth["Authorization"] end
      reqs[i + 1] = wrk.format("POST", "/update_ratelimit_record", h,
        '{"ratelimit_keys":["' .. key .. '"],"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}')
    end
  end
end

function request()
  counter = counter + 1
  return reqs[counter % keys + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"duration_us":%d,"requests":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.duration, summary.requests, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
