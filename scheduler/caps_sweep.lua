-- Drop the stale fields of one caps bucket (caps_stale.lua says which and why): beat's
-- maintenance sweep calls it over every bucket in turn (tasks/maintenance.py), so an
-- idle bucket, which caps.lua never sweeps, is emptied too. Idempotent: two beats, or a
-- sweep racing a decision, remove only what no decision reads.
--
-- KEYS[1]  the bucket (a hash of packed logs, caps_codec.lua)
-- ARGV[1]  the longest window in ms (widened by the margin), as caps.lua takes it
-- ARGV[2]  "" for Redis's clock, or the time in µs (tests drive a simulated clock)
-- Returns how many fields were removed.

--#include caps_codec
--#include caps_stale

local micros
if ARGV[2] == '' then
  local t = redis.call('TIME')
  micros = t[1] * 1000000 + t[2]
else
  micros = ARGV[2] + 0
end
return caps_sweep(KEYS[1], math.floor(micros / 1000), ARGV[1] + 0)
