-- The provider itself refused a number for a cap (ihuyi 4080/4081/4082, jumdata's
-- block): remember that nothing may be tried before now + ARGV[1] ms, keeping the log.
--
-- KEYS[1]  the number's log (layout in caps.lua)
-- ARGV[1]  block duration in ms
-- Returns the "blocked until" time in ms.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untill = now + tonumber(ARGV[1])

local raw = redis.call('GET', KEYS[1])
local rest = ''
if raw then
  local blocked = struct.unpack('>I6', raw)
  if blocked > untill then untill = blocked end
  rest = string.sub(raw, 7)
end

local ttl = redis.call('PTTL', KEYS[1])
local keep_for = untill - now
if ttl > keep_for then keep_for = ttl end
redis.call('SET', KEYS[1], struct.pack('>I6', untill) .. rest, 'PX', keep_for)
return untill
