/**
 * The token-bucket math, Lua edition (runs atomically inside Redis). Mirrors
 * ../limiter/bucket.ts line by line; keep both in step.
 *
 * KEYS[1] = the record (a HASH: b = balance, t = last fill time in µs)
 * ARGV = max_tokens, tokens_per_fill, fill_interval_us, ttl_seconds, cost, op ('check'|'charge'|'reserve'),
 *        now_us (optional; empty = Redis TIME. Only tests pass it.)
 * A negative cost with 'charge' is a refund, capped at max_tokens.
 * Returns { balance, last_fill_us, now_us } and, for 'reserve', a 4th element: 1 admitted, 0 refused.
 */
export const BUCKET_LUA = `
local max = tonumber(ARGV[1])
local tpf = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4]) * 1000
local cost = tonumber(ARGV[5])
local op = ARGV[6]
local now
if ARGV[7] ~= nil and ARGV[7] ~= '' then
  now = tonumber(ARGV[7])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local rec = redis.call('HMGET', KEYS[1], 'b', 't')
local balance, last
if rec[1] and rec[2] then
  balance = tonumber(rec[1])
  last = tonumber(rec[2])
  local intervals = math.floor((now - last) / interval)
  if intervals > 0 then
    balance = math.min(balance + intervals * tpf, max)
    last = last + intervals * interval
  end
else
  balance = max
  last = now
end
local admitted = 1
if op == 'reserve' then
  if balance > 0 and balance >= math.min(cost, max) then
    op = 'charge'
  else
    admitted = 0
  end
end
if op == 'charge' then
  if cost < 0 and balance - cost > max then
    balance = math.max(balance, max)
  else
    balance = balance - cost
  end
  if balance < max then
    local n = math.ceil((max - balance) / tpf)
    local full = math.ceil((last + n * interval - now) / 1000)
    if full > ttl then ttl = full end
  end
  redis.call('HSET', KEYS[1], 'b', string.format('%d', balance), 't', string.format('%d', last))
  redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
end
if ARGV[6] == 'reserve' then
  return { balance, last, now, admitted }
end
return { balance, last, now }
`;
