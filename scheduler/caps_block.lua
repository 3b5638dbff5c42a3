-- The provider itself refused a number for a cap (ihuyi 4080/4081/4082, jumdata's
-- block): remember that nothing may be tried before now + ARGV[1] ms, keeping the log.
--
-- KEYS[1]  the number's log (layout in caps.lua)
-- ARGV[1]  block duration in ms
-- Returns the "blocked until" time in ms (a longer block already in place stands).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked_until = now + tonumber(ARGV[1])

local raw = redis.call('GET', KEYS[1])
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

-- the key lives until the block ends, and no shorter than the log needs
local keep_for = blocked_until - now
local ttl = redis.call('PTTL', KEYS[1])
if ttl > keep_for then keep_for = ttl end
redis.call('SET', KEYS[1], string.char(255) .. struct.pack('>I6', blocked_until) .. rest,
  'PX', keep_for)
return blocked_until
