/**
 * The token-bucket math with the reservation and idempotency rules, Lua edition (runs
 * atomically inside Redis). Mirrors ./math.ts and ./reservation.ts line by line; keep them
 * in step. Lua numbers are doubles, like JS numbers: the same
 * operations in the same order give the same results. Numbers are written with '%.0f'
 * (exact for integral doubles; '%d' would overflow).
 *
 * KEYS[1] = the record (a HASH: b = balance, t = last fill time in µs)
 * KEYS[2] = the reservation record (a string: the amount deducted), optional
 * KEYS[3] = the request-id marker, optional (all three share the key's hash tag: one slot)
 * ARGV = 1 max_tokens, 2 tokens_per_fill, 3 fill_interval_us, 4 ttl_seconds, 5 cost,
 *        6 op ('check'|'charge'|'reserve'),
 *        7 now_us (empty = Redis TIME; only tests pass it), 8 max_debt,
 *        9 reservation mode ('' | 'new': an admitted reserve adds what it deducted to KEYS[2] |
 *          'use': a charge settles KEYS[2]), 10 refund claimed ('use'), 11 reservation ttl ms ('new'),
 *        12 request window ms ('' = no request id; else a charge applies once per KEYS[3])
 * A negative cost with 'charge' is a refund, capped at max_tokens.
 * Returns { balance, last_fill_us, now_us } ('reserve': and admitted 1|0); with a reservation
 * mode or a request window: { balance, last_fill_us, now_us, admitted, refunded, duplicate (1|0) }.
 */
export const BUCKET_LUA = `
local max = tonumber(ARGV[1])
local tpf = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local ttl = math.min(tonumber(ARGV[4]) * 1000, 1e12)
local cost = tonumber(ARGV[5])
local op = ARGV[6]
local floor = 0 - tonumber(ARGV[8] or '0')
local resmode = ARGV[9] or ''
local window = ARGV[12] or ''
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
if op == 'charge' and window ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  return { balance, last, now, 1, 0, 1 }
end
local admitted = 1
local refunded = 0
local before = balance
if op == 'reserve' then
  if balance > 0 and balance >= math.min(cost, max) then
    if balance - cost < floor then balance = math.min(balance, floor) else balance = balance - cost end
  else
    admitted = 0
  end
elseif op == 'charge' then
  if resmode == 'use' then
    local amount = redis.call('GET', KEYS[2])
    if amount then
      refunded = math.min(tonumber(ARGV[10]), tonumber(amount))
      redis.call('DEL', KEYS[2])
    end
    cost = cost - refunded
  end
  if cost < 0 then
    if balance - cost > max then balance = math.max(balance, max) else balance = balance - cost end
  elseif balance - cost < floor then
    balance = math.min(balance, floor)
  else
    balance = balance - cost
  end
end
if op == 'charge' or (op == 'reserve' and admitted == 1) then
  if balance < max then
    local n = math.ceil((max - balance) / tpf)
    if n * interval > 1e15 then
      ttl = 1e12
    else
      local full = math.ceil((last + n * interval - now) / 1000)
      if full > ttl then ttl = math.min(full, 1e12) end
    end
  end
  redis.call('HSET', KEYS[1], 'b', string.format('%.0f', balance), 't', string.format('%.0f', last))
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
  if op == 'reserve' and resmode == 'new' then
    -- Adds up (a key listed twice in one check reserves twice under one id).
    local held = tonumber(redis.call('GET', KEYS[2]) or '0')
    redis.call('SET', KEYS[2], string.format('%.0f', held + before - balance), 'PX', ARGV[11])
  end
  if op == 'charge' and window ~= '' then
    redis.call('SET', KEYS[3], '1', 'PX', window)
  end
end
if resmode == '' and window == '' then
  if op == 'reserve' then return { balance, last, now, admitted } end
  return { balance, last, now }
end
return { balance, last, now, admitted, refunded, 0 }
`;
