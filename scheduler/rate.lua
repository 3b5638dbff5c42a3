-- Provider-wide (or campaign-wide) throughput: GCRA, one theoretical-arrival time per
-- rate, all rates of one key checked together and taken only if all pass.
--
-- KEYS[1]  a hash: field = rate index, value = theoretical arrival time (ms, float)
-- ARGV[1]  how many sends to take (a batch takes several at once, all or none)
-- ARGV[2]  reach: how much of one burst this take may fill (0 < reach <= 1). Urgent and
--          normal sends reach the whole burst; bulk reaches only its share, so the
--          last part of every burst is always left for the others (scheduler/rates.py)
-- ARGV[3..] pairs: window_ms, amount
--
-- Returns {allowed (1|0), now_ms, retry_at_ms}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local quantity = tonumber(ARGV[1])
local reach = tonumber(ARGV[2])

local new_tats = {}
local retry_at = 0
local longest = 0
local latest = now
for i = 3, #ARGV, 2 do
  local window = tonumber(ARGV[i])
  local amount = tonumber(ARGV[i + 1])
  local interval = window / amount
  local tat = tonumber(redis.call('HGET', KEYS[1], i) or 0)
  if tat < now then tat = now end
  local new_tat = tat + interval * quantity
  -- allowed while the backlog stays within the reach of one window (a burst of
  -- ``amount``, or the part of it this class may fill)
  local allow_at = new_tat - window * reach
  if quantity > amount * reach then
    -- a take bigger than a whole burst would never fit: it goes alone, once nothing is
    -- outstanding, and what follows waits until it has drained at the rate
    allow_at = tat
  end
  if allow_at > now then
    if allow_at > retry_at then retry_at = allow_at end
  end
  new_tats[#new_tats + 1] = i
  new_tats[#new_tats + 1] = new_tat
  if window > longest then longest = window end
  if new_tat > latest then latest = new_tat end
end

if retry_at > 0 then
  return {0, math.floor(now), math.ceil(retry_at)}
end
redis.call('HSET', KEYS[1], unpack(new_tats))
-- kept while any backlog is outstanding (an oversized take runs past one window)
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(longest * 2, latest - now + longest)))
return {1, math.floor(now), 0}
