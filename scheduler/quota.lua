-- A daily quota: at most ARGV[1] units a day under one key, the day running from one
-- midnight to the next in the quota's time zone. O(1): a count and the day it counts,
-- whatever the quota (a sliding log, as caps.lua keeps, grows with the amount).
--
-- KEYS[1]  a hash: day (days since the epoch, local), used (units taken that day)
-- ARGV[1]  the quota (units a day)
-- ARGV[2]  units to take (all or none), or, negative, to give back
-- ARGV[3]  the zone's offset from UTC now, in ms (Asia/Shanghai: 28800000)
-- ARGV[4]  for a give-back: the day the units were taken on ("" for a take). Units
--          taken before midnight are not given back to the next day's count.
--
-- Returns {allowed (1|0), used after this call, the day, the next midnight in epoch ms}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local quota = tonumber(ARGV[1])
local units = tonumber(ARGV[2])
local offset = tonumber(ARGV[3])
local day = math.floor((now + offset) / 86400000)
local next_midnight = (day + 1) * 86400000 - offset

local stored = redis.call('HMGET', KEYS[1], 'day', 'used')
local used = 0
if tonumber(stored[1]) == day then used = tonumber(stored[2]) or 0 end

if units < 0 then
  if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= day then
    return {1, used, day, next_midnight}
  end
  used = math.max(0, used + units)
elseif used + units > quota then
  return {0, used, day, next_midnight}
else
  used = used + units
end
redis.call('HSET', KEYS[1], 'day', day, 'used', used)
-- kept past midnight by an hour, then it is an old day's count and no longer needed
redis.call('PEXPIREAT', KEYS[1], next_midnight + 3600000)
return {1, used, day, next_midnight}
