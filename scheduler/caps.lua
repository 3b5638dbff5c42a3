-- Check every per-number cap of one provider for one number and, only if all pass,
-- record the attempt. One key per (provider, number); Redis's own clock.
--
-- KEYS[1]  the number's log, one string (see "Layout" below)
-- ARGV[1]  the longest window in ms: the key's TTL, past which no attempt matters
-- ARGV[2..] pairs: window_ms, amount, one pair per cap (each window already widened by
--          the caller's margin for arrival jitter at the provider)
--
-- Returns now_ms (an integer) when allowed, else {now_ms, retry_at_ms, cap_index}:
-- cap_index 0 is the provider's own block (caps_block.lua), 1.. the refusing cap's
-- position among the pairs (the tightest: the one that frees last). The common answer
-- is one integer, the cheapest reply to parse.
-- Every amount must be at least 1 (scheduler/limits.py refuses 0).
--
-- Layout (small: three attempts each within 35 minutes of the one before take 12 bytes,
-- which with the object header fit Redis's smallest, 32-byte, string allocation):
--   0xFF + 6-byte big-endian ms   "blocked until", present only while a provider's
--                                 block stands (a base time never starts with 0xFF)
--   6-byte big-endian ms          the oldest kept attempt
--   varints                       each later attempt as ms after the one before it,
--                                 7 bits a byte, low bits first, high bit = "more"
-- At most max(amount) attempts are kept, and none older than the longest window.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local longest = tonumber(ARGV[1])

local raw = redis.call('GET', KEYS[1])
if not raw then
  -- the common case, a number with nothing recorded: every cap (amount >= 1) passes
  redis.call('SET', KEYS[1], struct.pack('>I6', now), 'PX', longest)
  return now
end

local log = {}
local n = 0
local pos = 1
if string.byte(raw, 1) == 255 then
  local blocked = struct.unpack('>I6', raw, 2)
  if blocked > now then
    return {now, blocked, 0}
  end
  pos = 8
end
if #raw >= pos + 5 then
  local at = struct.unpack('>I6', raw, pos)
  n = 1
  log[1] = at
  local delta, scale = 0, 1
  for i = pos + 6, #raw do
    local b = string.byte(raw, i)
    if b >= 128 then
      delta = delta + (b - 128) * scale
      scale = scale * 128
    else
      at = at + delta + b * scale
      n = n + 1
      log[n] = at
      delta, scale = 0, 1
    end
  end
end

local keep = 1
local retry_at = 0
local refusing = 0
for i = 2, #ARGV, 2 do
  local window = tonumber(ARGV[i])
  local amount = tonumber(ARGV[i + 1])
  if amount > keep then keep = amount end
  -- the amount-th most recent attempt decides: inside the window → refused, and the
  -- cap frees the moment that attempt leaves the window
  if n >= amount then
    local decisive = log[n - amount + 1]
    if decisive > now - window and decisive + window > retry_at then
      retry_at = decisive + window
      refusing = i / 2
    end
  end
end

if refusing > 0 then
  return {now, retry_at, refusing}
end

-- never record earlier than the last attempt: if Redis's clock stepped back, the log
-- stays ordered and the attempt counts for longer, never for less
local stamp = now
if n > 0 and log[n] > stamp then stamp = log[n] end
n = n + 1
log[n] = stamp

local first = math.max(1, n - keep + 1)
while first < n and log[first] <= now - longest do
  first = first + 1
end

local parts = {struct.pack('>I6', log[first])}
local bytes = {}
for i = first + 1, n do
  local d = log[i] - log[i - 1]
  local k = 0
  while d >= 128 do
    k = k + 1
    bytes[k] = 128 + d % 128
    d = math.floor(d / 128)
  end
  bytes[k + 1] = d
  parts[#parts + 1] = string.char(unpack(bytes, 1, k + 1))
end
redis.call('SET', KEYS[1], table.concat(parts), 'PX', longest)
return now
