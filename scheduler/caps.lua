-- Check every per-number cap of one provider for one number and, only if all pass,
-- record the attempt. One key per (provider, number); Redis's own clock.
--
-- KEYS[1]  the number's log: a string of 6-byte big-endian millisecond times,
--          the first being "blocked until" (0 if not blocked), then the attempts,
--          oldest first; at most max(amount) attempts are kept.
-- ARGV[1]  margin in ms added to every window (arrival jitter at the provider)
-- ARGV[2..] pairs: window_ms, amount — one pair per cap
--
-- Returns {allowed (1|0), now_ms, retry_at_ms, cap_index}; cap_index 0 means the
-- provider's own block (see caps_block.lua), 1.. the refusing cap's position in ARGV.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local margin = tonumber(ARGV[1])

local raw = redis.call('GET', KEYS[1])
local blocked = 0
local log = {}
if raw then
  blocked = struct.unpack('>I6', raw)
  for pos = 7, #raw - 5, 6 do
    log[#log + 1] = struct.unpack('>I6', raw, pos)
  end
end

if blocked > now then
  return {0, now, blocked, 0}
end

local n = #log
local longest = 0
local keep = 1
local retry_at = 0
local refusing = -1
for i = 2, #ARGV, 2 do
  local window = tonumber(ARGV[i]) + margin
  local amount = tonumber(ARGV[i + 1])
  if window > longest then longest = window end
  if amount > keep then keep = amount end
  -- the amount-th most recent attempt decides: inside the window → refused
  if n >= amount then
    local decisive = log[n - amount + 1]
    if decisive > now - window then
      local frees = decisive + window
      if frees > retry_at then
        retry_at = frees
        refusing = i / 2
      end
    end
  end
end

if refusing >= 0 then
  return {0, now, retry_at, refusing}
end

log[n + 1] = now
local first = math.max(1, #log - keep + 1)
local parts = {struct.pack('>I6', 0)}
for i = first, #log do
  if log[i] > now - longest then
    parts[#parts + 1] = struct.pack('>I6', log[i])
  end
end
redis.call('SET', KEYS[1], table.concat(parts), 'PX', longest)
return {1, now, 0, 0}
