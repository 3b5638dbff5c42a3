-- The provider itself refused a number for a cap (ihuyi 4080/4081/4082, jumdata's
-- block): remember that nothing may be tried before now + ARGV[2] ms, keeping the log.
--
-- KEYS[1]  the number's bucket (a hash of packed logs, caps_codec.lua)
-- ARGV[1]  the number's field in the bucket
-- ARGV[2]  block duration in ms
-- Returns the "blocked until" time in ms (a longer block already in place stands). The
-- field stays while the block does: caps_stale.lua keeps a field whose block stands.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked_until = now + tonumber(ARGV[2])

local raw = redis.call('HGET', KEYS[1], ARGV[1])
local rest = ''
if raw then
  if string.byte(raw, 1) == 255 then
    local blocked = struct.unpack('>I6', raw, 2)
    if blocked > blocked_until then blocked_until = blocked end
    rest = string.sub(raw, 8)
  else
    rest = raw
  end
end

redis.call('HSET', KEYS[1], ARGV[1], string.char(255) .. struct.pack('>I6', blocked_until) .. rest)
return blocked_until
