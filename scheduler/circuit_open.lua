-- Open a provider's circuit, atomically: while it is open, another account error changes
-- nothing; once its cool-down has passed (a failed half-open probe), it opens again for
-- twice as long, up to a ceiling.
--
-- KEYS[1]  the circuit hash: until (epoch s), opens (count), reason
-- KEYS[2]  the half-open probe token (deleted on a fresh open)
-- ARGV[1]  now (epoch s)   ARGV[2] base cool-down (s)   ARGV[3] ceiling (s)   ARGV[4] reason
-- Returns {until, cooldown (0 if it was already open)} as strings.

local now = tonumber(ARGV[1])
local reopen_at = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if now < reopen_at then
  return {tostring(reopen_at), "0"}
end
local opens = redis.call('HINCRBY', KEYS[1], 'opens', 1)
local cooldown = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ (opens - 1))
reopen_at = now + cooldown
redis.call('HSET', KEYS[1], 'until', tostring(reopen_at), 'reason', ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(cooldown + tonumber(ARGV[3])))
redis.call('DEL', KEYS[2])
return {tostring(reopen_at), tostring(cooldown)}
