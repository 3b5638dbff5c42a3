-- The packed per-number log shared by caps.lua and caps_refund.lua (inlined into each
-- by scheduler/scripts.py where a script says `--#include caps_codec`).
--
-- Layout (small: three attempts each within 35 minutes of the one before take 12 bytes,
-- which with the object header fit Redis's smallest, 32-byte, string allocation):
--   0xFF + 6-byte big-endian ms   "blocked until", present only while a provider's
--                                 block stands (a base time never starts with 0xFF)
--   6-byte big-endian ms          the oldest kept attempt
--   varints                       each later attempt as ms after the one before it,
--                                 7 bits a byte, low bits first, high bit = "more"
--
-- Worked example: attempts at 1764633600000, +1000 ms and +61000 ms (epoch ms):
--   01 9A DC 5B E0 00 | E8 07 | C8 DC 03
--   base 0x019ADC5BE000 = 1764633600000; 1000 = 0x3E8 → E8 07 (0x68|0x80, 0x07);
--   61000 = 0xEE48 → C8 DC 03 (0x48|0x80, 0x5C|0x80, 0x03). 11 bytes.
-- A number's log is one field of its provider's bucket hash (scheduler/caps.py);
-- `notifyq caps show NUMBER` decodes a live one the same way.

-- raw → blocked_until (ms, or 0), log (array of ms, oldest first), n
local function caps_decode(raw)
  local log, n, pos, blocked = {}, 0, 1, 0
  if not raw then return blocked, log, n end
  local byte = string.byte -- once, not a global lookup a byte
  if byte(raw, 1) == 255 then
    blocked = struct.unpack('>I6', raw, 2)
    pos = 8
  end
  if #raw >= pos + 5 then
    local at = struct.unpack('>I6', raw, pos)
    n = 1
    log[1] = at
    local delta, scale = 0, 1
    for i = pos + 6, #raw do
      local b = byte(raw, i)
      if b >= 128 then
        delta = delta + (b - 128) * scale
        scale = scale * 128
      else
        at = at + delta + b * scale
        n = n + 1
        log[n] = at
        delta, scale = 0, 1
      end
    end
  end
  return blocked, log, n
end

-- the varint bytes of one gap (ms), appended to bytes[k+1..]; the new k
local function caps_varint(bytes, k, d)
  while d >= 128 do
    k = k + 1
    bytes[k] = 128 + d % 128
    d = math.floor(d / 128)
  end
  bytes[k + 1] = d
  return k + 1
end

-- one gap's varint as a string, without the table caps_varint fills: gaps under 2^14 ms
-- (16 s) or 2^21 ms (35 min) are most of what caps.lua appends
local function caps_gap(d)
  if d < 128 then return string.char(d) end
  local low = d % 128
  d = (d - low) / 128
  if d < 128 then return string.char(128 + low, d) end
  local mid = d % 128
  d = (d - mid) / 128
  if d < 128 then return string.char(128 + low, 128 + mid, d) end
  local bytes = {128 + low, 128 + mid}
  return string.char(unpack(bytes, 1, caps_varint(bytes, 2, d)))
end

-- log[first..n] → the packed string (no block header); every gap's bytes go into one
-- table and one string, a few thousand at a time (string.char takes its arguments on
-- Lua's C stack)
local function caps_encode(log, first, n)
  local parts, bytes, k = {struct.pack('>I6', log[first])}, {}, 0
  for i = first + 1, n do
    k = caps_varint(bytes, k, log[i] - log[i - 1])
    if k > 4000 then
      parts[#parts + 1] = string.char(unpack(bytes, 1, k))
      k = 0
    end
  end
  if k > 0 then parts[#parts + 1] = string.char(unpack(bytes, 1, k)) end
  return table.concat(parts)
end
