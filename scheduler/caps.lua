-- Check every per-number cap of one provider for one number and, only if all pass,
-- record the attempt. One key per (provider, number); Redis's own clock.
--
-- KEYS[1]  the number's log, one string (layout and a worked example: caps_codec.lua)
-- ARGV[1]  the longest window in ms: the key's TTL, past which no attempt matters
-- ARGV[2]  "" for Redis's clock, or the time in µs (tests drive a simulated clock)
-- ARGV[3..] pairs: window_ms, amount, one pair per cap (each window already widened by
--          the caller's margin for arrival jitter at the provider)
--
-- Returns the recorded stamp in ms (an integer) when allowed — what caps_refund.lua
-- takes back should this attempt not be used — else {now_ms, retry_at_ms, cap_index}:
-- cap_index 0 is the provider's own block (caps_block.lua), 1.. the refusing cap's
-- position among the pairs (the tightest: the one that frees last). The common answer
-- is one integer, the cheapest reply to parse.
-- Every amount must be at least 1 (scheduler/limits.py refuses 0).
--
-- Rounding toward safety: a decision compares against the time rounded DOWN to the ms,
-- an attempt is recorded at the time rounded UP, so an attempt never looks older than
-- it is and a cap never frees early, even with no margin (1 ms early, rounding down).
-- At most max(amount) attempts are kept, and none older than the longest window.

--#include caps_codec

local micros
if ARGV[2] == '' then
  local t = redis.call('TIME')
  micros = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  micros = tonumber(ARGV[2])
end
local now = math.floor(micros / 1000)
local stamp = math.ceil(micros / 1000)
local longest = tonumber(ARGV[1])

local raw = redis.call('GET', KEYS[1])
if not raw then
  -- the common case, a number with nothing recorded: every cap (amount >= 1) passes
  redis.call('SET', KEYS[1], struct.pack('>I6', stamp), 'PX', longest)
  return stamp
end

local blocked, log, n = caps_decode(raw)
if blocked > now then
  return {now, blocked, 0}
end

local keep = 1
local retry_at = 0
local refusing = 0
for i = 3, #ARGV, 2 do
  local window = tonumber(ARGV[i])
  local amount = tonumber(ARGV[i + 1])
  if amount > keep then keep = amount end
  -- the amount-th most recent attempt decides: inside the window → refused, and the
  -- cap frees the moment that attempt leaves the window
  if n >= amount then
    local decisive = log[n - amount + 1]
    if decisive > now - window and decisive + window > retry_at then
      retry_at = decisive + window
      refusing = (i - 1) / 2
    end
  end
end

if refusing > 0 then
  return {now, retry_at, refusing}
end

-- never record earlier than the last attempt: if Redis's clock stepped back, the log
-- stays ordered and the attempt counts for longer, never for less
if n > 0 and log[n] > stamp then stamp = log[n] end
n = n + 1
log[n] = stamp

local first = math.max(1, n - keep + 1)
while first < n and log[first] <= now - longest do
  first = first + 1
end

redis.call('SET', KEYS[1], caps_encode(log, first, n), 'PX', longest)
return stamp
