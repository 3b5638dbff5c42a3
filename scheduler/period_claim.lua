-- One send of a periodic job per period, whatever number of beats ask (scheduler/periods.py).
-- KEYS[1]: the job's last send (milliseconds on Redis's clock)
-- ARGV[1]: the least gap between two sends (ms); ARGV[2]: how long the key is kept (ms)
-- Returns 1 and records now if the last send is at least the gap ago (or unknown), else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if now - last < tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], now, 'PX', tonumber(ARGV[2]))
return 1
