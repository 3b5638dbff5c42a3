-- Dropping what no cap can use any more, shared by caps.lua (now and then, over the
-- bucket it writes) and caps_sweep.lua (beat, over every bucket in turn); inlined by
-- scheduler/scripts.py where a script says `--#include caps_stale`, after caps_codec.
--
-- A field is stale when its newest attempt is no later than now - longest (the longest
-- window, widened by the margin) and no provider's block stands: every cap then reads it
-- as empty (an attempt counts while it is later than now - window), so removing it
-- changes no decision, only memory. Buckets have no TTL: this is what bounds them.

-- on one new field in this many (by the stamp's value), caps.lua sweeps its bucket: a
-- bucket of a few dozen fields costs some 10 µs to sweep, a few hundredths of a µs a
-- decision
local SWEEP_ONE_IN = 256

-- drop key's stale fields (now and longest in ms); returns how many went
local function caps_sweep(key, now, longest)
  local all = redis.call('HGETALL', key)
  local stale, k, gone = {}, 0, 0
  for i = 1, #all, 2 do
    local blocked, log, n = caps_decode(all[i + 1])
    if blocked <= now and (n == 0 or log[n] <= now - longest) then
      k = k + 1
      stale[k] = all[i]
      if k == 1000 then -- HDEL's arguments go on Lua's C stack: a thousand at a time
        gone = gone + redis.call('HDEL', key, unpack(stale, 1, k))
        k = 0
      end
    end
  end
  if k > 0 then gone = gone + redis.call('HDEL', key, unpack(stale, 1, k)) end
  return gone
end
