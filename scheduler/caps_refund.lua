-- Take back an attempt that caps.lua recorded but that was never used: the copy of a
-- task that took the slot lost the race to mark its notification `sending` (another
-- copy had it), or its request could not leave in time. Without this, a duplicate
-- would push the real send out by a whole window.
--
-- KEYS[1]  the number's bucket (a hash of packed logs, caps_codec.lua)
-- ARGV[1]  the number's field in the bucket
-- ARGV[2]  the stamp caps.lua returned when it recorded the attempt
-- Returns 1 if an attempt at that stamp was found and removed, else 0 (already aged
-- out, or the field was lost: nothing to take back). A provider's block is kept.

--#include caps_codec

local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local stamp = tonumber(ARGV[2])
local blocked, log, n = caps_decode(raw)
local found = 0
for i = n, 1, -1 do
  if log[i] == stamp then found = i break end
end
if found == 0 then return 0 end
table.remove(log, found)
n = n - 1

local header = ''
if blocked > 0 then header = string.char(255) .. struct.pack('>I6', blocked) end
if n == 0 and header == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
local body = ''
if n > 0 then body = caps_encode(log, 1, n) end
redis.call('HSET', KEYS[1], ARGV[1], header .. body)
return 1
