-- Check every per-number cap of one provider for one number and, only if all pass,
-- record the attempt. One key per (provider, number); Redis's own clock. Redis >= 7.0
-- (SET with both NX and GET).
--
-- KEYS[1]  the number's log, one string (layout and a worked example: caps_codec.lua)
-- KEYS[2]  this Redis's lineage mark (only when ARGV[3] is not ""): see "lineage" below
-- ARGV[1]  the longest window in ms: the key's TTL, past which no attempt matters
-- ARGV[2]  "" for Redis's clock, or the time in µs (tests drive a simulated clock)
-- ARGV[3]  "" to trust the log as it is; "?" to check the lineage, no floor given; or k,
--          the number of the store's past calls that follow as the floor
-- ARGV[4..3+2k]  the floor: pairs started_ms, ended_ms (0: still calling) of the calls
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

--#include caps_codec

-- Speed: the script's own Lua costs as much as its Redis commands, so the common path
-- reads each argument once, turns strings into numbers by arithmetic (`s + 0`, ~50 ns
-- on Redis 7.0) rather than by tonumber (~120 ns, a function call through the
-- sandbox's globals), and keeps the library functions it uses in locals (math.floor
-- looked up each time ~75 ns, from a local ~15 ns).
local floor, ceil = math.floor, math.ceil

local micros
local at = ARGV[2]
if at == '' then
  local t = redis.call('TIME')
  micros = t[1] * 1000000 + t[2]
else
  micros = at + 0
end
local now = floor(micros / 1000)
local stamp = ceil(micros / 1000)
local longest = ARGV[1] + 0

local first_cap = 4
local floor_calls = nil
local lineage = ARGV[3]
if lineage ~= '' then
  local given = tonumber(lineage)
  if given then first_cap = 4 + 2 * given end
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
    for i = 4, first_cap - 1, 2 do
      if tonumber(ARGV[i]) < began then
        local ended = tonumber(ARGV[i + 1])
        if ended == 0 then ended = stamp end
        floor_calls[#floor_calls + 1] = ended
      end
    end
  end
end

local raw
if floor_calls then
  raw = redis.call('GET', KEYS[1])
else
  -- the common case, a number with nothing recorded: every cap (amount >= 1) passes,
  -- and the one command that finds the key empty records the attempt (NX: a log
  -- already there is left as it is and returned, to be decided on below)
  raw = redis.call('SET', KEYS[1], struct.pack('>I6', stamp), 'PX', longest, 'NX', 'GET')
  if not raw then return stamp end
end

local blocked, log, n = caps_decode(raw)
if blocked > now then
  return {now, blocked, 0}
end

-- what the caps count: the log, or while in doubt the floor and the log since the
-- lineage began
local seen, m = log, n
if floor_calls then
  seen = {}
  for i = 1, #floor_calls do seen[i] = floor_calls[i] end
  for i = 1, n do
    if log[i] >= floor_calls.began then seen[#seen + 1] = log[i] end
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
redis.call('SET', KEYS[1], value, 'PX', longest)
return stamp
