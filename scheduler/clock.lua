-- notifyq's clock under control (scheduler/clock.py): Redis's TIME and the offset a test
-- or an operator set, read in one round trip so the two are never from different moments.
--
-- KEYS[1]  the offset key: seconds (a float, as text) to add to TIME; absent means 0
-- Returns {seconds, microseconds, offset}, each as text.

local t = redis.call('TIME')
local offset = redis.call('GET', KEYS[1]) or '0'
return {t[1], t[2], offset}
