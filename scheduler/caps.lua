-- Check every per-number cap of one provider for one number and, only if all pass,
-- record the attempt. A number's log is one field of one of the provider's bucket
-- hashes (scheduler/caps.py says why: memory); Redis's own clock. Redis >= 7.0.
--
-- KEYS[1]  the number's bucket: a hash, one packed log a field (caps_codec.lua)
-- KEYS[2]  this Redis's lineage mark (only when ARGV[5] is not ""): see "lineage" below
-- ARGV[1]  the number's field in the bucket (its digits)
-- ARGV[2]  the longest window in ms, past which no attempt matters
-- ARGV[3]  "" for Redis's clock, or the time in µs (tests drive a simulated clock)
-- ARGV[4]  "" or the packed log of the number's key of the old layout (one key a
--          number, read by the caller while such keys may still hold attempts): its
--          attempts and block count as the log's own, and it is never written
-- ARGV[5]  "" to trust the log as it is; "?" to check the lineage, no floor given; or k,
--          the number of the store's past calls that follow as the floor
-- ARGV[6..5+2k]  the floor: pairs started_ms, ended_ms (0: still calling) of the calls
--          the store recorded for this number, oldest first
-- then pairs: window_ms, amount, one pair per cap (each window already widened by the
--          caller's margin for arrival jitter at the provider)
--
-- Returns the recorded stamp in ms (an integer) when allowed — what caps_refund.lua
-- takes back should this attempt not be used — else {now_ms, retry_at_ms, cap_index}:
-- cap_index 0 is the provider's own block (caps_block.lua), 1.. the refusing cap's
-- position among the pairs (the tightest: the one that frees last), -1 "in doubt, send
-- the floor" (retry_at_ms is then the moment this lineage began). The common answer is
-- one integer, the cheapest reply to parse.
-- Every amount must be at least 1 (scheduler/limits.py refuses 0).
--
-- Lineage: the log of a Redis whose history began less than a window ago may lack
-- attempts (a replica promoted before it received them, a restart that lost the last
-- writes). The mark holds the replication id and the moment this Redis first saw
-- caps under it; a promotion or a restart changes the id, so the mark no longer matches
-- and the lineage begins again. While in doubt, the attempts that count are the store's
-- calls started before the lineage began plus the log's own since: disjoint, and
-- together every call made (scheduler/caps_floor.py).
--
-- Rounding toward safety: a decision compares against the time rounded DOWN to the ms,
-- an attempt is recorded at the time rounded UP, so an attempt never looks older than
-- it is and a cap never frees early, even with no margin (1 ms early, rounding down).
-- At most max(amount) attempts are kept, and none older than the longest window.
--
-- Memory: buckets have no TTL. A field whose every attempt is older than the longest
-- window (and no block standing) counts for nothing; such fields are dropped by
-- caps_sweep (caps_stale.lua): here, on one new field in SWEEP_ONE_IN, over this
-- bucket, and from beat over every bucket in turn (tasks/maintenance.py).

--#include caps_codec
--#include caps_stale

-- Speed: the script's own Lua costs as much as its Redis commands, so the common path
-- reads each argument once, turns strings into numbers by arithmetic (`s + 0`, ~50 ns
-- on Redis 7.0) rather than by tonumber (~120 ns, a function call through the
-- sandbox's globals), and keeps the library functions it uses in locals (math.floor
-- looked up each time ~75 ns, from a local ~15 ns).
local floor, ceil = math.floor, math.ceil

local micros
local at = ARGV[3]
if at == '' then
  local t = redis.call('TIME')
  micros = t[1] * 1000000 + t[2]
else
  micros = at + 0
end
local now = floor(micros / 1000)
local stamp = ceil(micros / 1000)
local longest = ARGV[2] + 0
local field = ARGV[1]

local first_cap = 6
local floor_calls = nil
local lineage = ARGV[5]
if lineage ~= '' then
  local given = tonumber(lineage)
  if given then first_cap = 6 + 2 * given end
  -- a plain search, not a pattern: the id is 40 characters after its label
  local info = redis.call('INFO', 'replication')
  local from = string.find(info, 'master_replid:', 1, true) + 14
  local replid = string.sub(info, from, from + 39)
  local mark = redis.call('GET', KEYS[2])
  local began
  if mark and string.sub(mark, 1, #replid + 1) == replid .. ' ' then
    began = tonumber(string.sub(mark, #replid + 2))
  else
    began = stamp
    redis.call('SET', KEYS[2], replid .. ' ' .. stamp)
  end
  if now - began < longest then
    if not given then
      return {now, began, -1}
    end
    floor_calls = {began = began}
    for i = 6, first_cap - 1, 2 do
      if tonumber(ARGV[i]) < began then
        local ended = tonumber(ARGV[i + 1])
        if ended == 0 then ended = stamp end
        floor_calls[#floor_calls + 1] = ended
      end
    end
  end
end

local legacy = ARGV[4]
local raw = redis.call('HGET', KEYS[1], field)
if not raw and legacy == '' and not floor_calls then
  -- the common case, a number with nothing recorded: every cap (amount >= 1) passes
  redis.call('HSET', KEYS[1], field, struct.pack('>I6', stamp))
  -- the bucket grew: on one stamp in SWEEP_ONE_IN, drop what no cap can use there
  if stamp % SWEEP_ONE_IN == 0 then caps_sweep(KEYS[1], now, longest) end
  return stamp
end

local blocked, log, n = caps_decode(raw)
-- what the decision reads: this log, merged with the old layout's while given
local past, p, held = log, n, blocked
if legacy ~= '' then
  local old_blocked, old_log, old_n = caps_decode(legacy)
  if old_blocked > held then held = old_blocked end
  if old_n > 0 then
    past = {}
    for i = 1, n do past[i] = log[i] end
    for i = 1, old_n do past[n + i] = old_log[i] end
    table.sort(past)
    p = n + old_n
  end
end
if held > now then
  return {now, held, 0}
end

-- what the caps count: the log, or while in doubt the floor and the log since the
-- lineage began
local seen, m = past, p
if floor_calls then
  seen = {}
  for i = 1, #floor_calls do seen[i] = floor_calls[i] end
  for i = 1, p do
    if past[i] >= floor_calls.began then seen[#seen + 1] = past[i] end
  end
  table.sort(seen)
  m = #seen
end

local keep = 1
local retry_at = 0
local refusing = 0
for i = first_cap, #ARGV, 2 do
  local window = ARGV[i] + 0
  local amount = ARGV[i + 1] + 0
  if amount > keep then keep = amount end
  -- the amount-th most recent attempt decides: inside the window → refused, and the
  -- cap frees the moment that attempt leaves the window
  if m >= amount then
    local decisive = seen[m - amount + 1]
    if decisive > now - window and decisive + window > retry_at then
      retry_at = decisive + window
      refusing = (i - first_cap) / 2 + 1
    end
  end
end

if refusing > 0 then
  return {now, retry_at, refusing}
end

-- never record earlier than the last attempt: if Redis's clock stepped back, the log
-- stays ordered and the attempt counts for longer, never for less
if n > 0 and log[n] > stamp then stamp = log[n] end
-- nor, while in doubt, before the lineage began: the log counts only its attempts since,
-- and the store's floor was read before this one was made, so an attempt stamped earlier
-- (a caller's clock behind the one that began the lineage) would count nowhere
if floor_calls and stamp < floor_calls.began then stamp = floor_calls.began end
n = n + 1
log[n] = stamp

local first = n - keep + 1
if first < 1 then first = 1 end
while first < n and log[first] <= now - longest do
  first = first + 1
end

local value
if first == 1 and blocked == 0 and n > 1 then
  -- nothing ages out and no block header: the stored log gains one gap, unparsed
  value = raw .. caps_gap(stamp - log[n - 1])
else
  value = caps_encode(log, first, n)
end
redis.call('HSET', KEYS[1], field, value)
return stamp
