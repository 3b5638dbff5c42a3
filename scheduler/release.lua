-- Take up to ARGV[1] members whose time has come out of the "not before" set, atomically,
-- so two pumps never release one notification twice. Redis's clock decides "due".
--
-- KEYS[1]  the sorted set (score = not-before, epoch seconds)
-- KEYS[2]  optional: the clock's offset key (scheduler/clock.py), given only while clock
--          control is on; its seconds are added to Redis's time
-- ARGV[1]  the most members to release
-- Returns the released members.

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if KEYS[2] then
  now = now + tonumber(redis.call('GET', KEYS[2]) or '0')
end
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
-- in slices: unpack() of more than a few thousand values overflows Lua's C stack
for i = 1, #due, 1000 do
  redis.call('ZREM', KEYS[1], unpack(due, i, math.min(i + 999, #due)))
end
return due
