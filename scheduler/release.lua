-- Take up to ARGV[1] members whose time has come out of the "not before" set, atomically,
-- so two pumps never release one notification twice. Redis's clock decides "due".
--
-- KEYS[1]  the sorted set (score = not-before, epoch seconds)
-- ARGV[1]  the most members to release
-- Returns the released members.

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
return due
