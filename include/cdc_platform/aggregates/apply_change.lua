-- Applies one row change to every real-time aggregate, fenced by the row's last-applied position.
--
-- KEYS: 1 row fence, 2 counts, 3 10m, 4 avg pct, 5 pct sum, 6 pct count, 7 device set, 8 watermark
-- ARGV: 1 minute-bucket key prefix, 2 device key prefix, 3 window minutes,
--       4 op, 5 position (decimal string), 6 content_id, 7 event_ts_ms, 8 epoch minute,
--       9 device, 10 engagement_pct, 11 pct band ('low', 'high' or '')
--       ('' stands for null)
-- Returns {1} when applied, {0} when the fence says the change is stale or a duplicate.
--
-- Minute buckets and device hashes are derived from ARGV and the stored fence, so this
-- script needs a standalone Redis (not Redis Cluster).

local fence, counts, win, avg, psum, pcount, devset, wm =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local minute_prefix, device_prefix = ARGV[1], ARGV[2]
local window = tonumber(ARGV[3])
local op, pos, ts = ARGV[4], ARGV[5], ARGV[7]
local incoming = {content = ARGV[6], minute = ARGV[8], device = ARGV[9], pct = ARGV[10], band = ARGV[11]}

-- Lua's default number-to-string keeps 14 digits; sums and means must round-trip exactly.
local function fmt(n) return string.format('%.17g', n) end

-- LSNs can exceed 2^53, so positions are compared as decimal strings, never as Lua numbers.
local function pos_gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

-- Event-time clock: the largest event_ts of any insert/update/snapshot change delivered, applied
-- or stale, so the window does not depend on arrival order. A delete's before-image never moves
-- it: deletes are not validated (a row must never outlive its deletion), so the before-image of
-- a quarantined far-future row would otherwise push the window past every real event.
-- The window is [end - window + 1, end] in minutes.
local clock = redis.call('HGET', wm, 'max_event_ts_ms')
local old_end = redis.call('HGET', wm, 'window_end_minute')
old_end = old_end and tonumber(old_end) or nil
local win_end = old_end
local advanced = false
if op ~= 'd' and ts ~= '' and (not clock or tonumber(ts) > tonumber(clock)) then
  redis.call('HSET', wm, 'max_event_ts_ms', ts, 'window_end_minute', incoming.minute)
  local e = tonumber(incoming.minute)
  if old_end == nil or e > old_end then
    win_end = e
    advanced = true
  end
end
local win_start = win_end and (win_end - window + 1) or nil

local function bucket_key(m) return minute_prefix .. string.format('%d', m) end

if advanced and old_end then
  -- Buckets only exist inside the window; ones that fall out are never read again.
  for m = old_end - window + 1, math.min(old_end, win_start - 1) do
    redis.call('DEL', bucket_key(m))
  end
end

local function rebuild_window()
  local keys = {}
  for m = win_start, win_end do keys[#keys + 1] = bucket_key(m) end
  redis.call('ZUNIONSTORE', win, #keys, unpack(keys))
end

local stored = redis.call('HMGET', fence, 'pos', 'deleted', 'content', 'minute', 'device', 'pct', 'band')
if stored[1] and not pos_gt(pos, stored[1]) then
  if advanced then rebuild_window() end
  return {0}
end

local function in_window(m)
  if m == '' or not win_start then return false end
  local n = tonumber(m)
  return n >= win_start and n <= win_end
end

local function zadd_delta(key, member, delta)
  local v = tonumber(redis.call('ZINCRBY', key, delta, member))
  if v <= 0 then redis.call('ZREM', key, member) end
end

local function contribute(c, sign)
  if c.content ~= '' then
    zadd_delta(counts, c.content, sign)
    if in_window(c.minute) then
      zadd_delta(minute_prefix .. c.minute, c.content, sign)
      zadd_delta(win, c.content, sign)
    end
    if c.pct ~= '' then
      local n = redis.call('HINCRBY', pcount, c.content, sign)
      if n <= 0 then
        redis.call('HDEL', psum, c.content)
        redis.call('HDEL', pcount, c.content)
        redis.call('ZREM', avg, c.content)
      else
        local s = tonumber(redis.call('HGET', psum, c.content) or '0') + sign * tonumber(c.pct)
        redis.call('HSET', psum, c.content, fmt(s))
        redis.call('ZADD', avg, fmt(s / n), c.content)
      end
    end
  end
  if c.device ~= '' then
    local key = device_prefix .. c.device
    local f = redis.call('HMGET', key, 'count', 'pct_sum', 'pct_count', 'very_low', 'very_high')
    local count = tonumber(f[1] or '0') + sign
    if count <= 0 then
      redis.call('DEL', key)
      redis.call('SREM', devset, c.device)
      return
    end
    local pct_sum, pct_count = tonumber(f[2] or '0'), tonumber(f[3] or '0')
    local very_low, very_high = tonumber(f[4] or '0'), tonumber(f[5] or '0')
    if c.pct ~= '' then
      pct_sum = pct_sum + sign * tonumber(c.pct)
      pct_count = pct_count + sign
      if c.band == 'low' then very_low = very_low + sign end
      if c.band == 'high' then very_high = very_high + sign end
    end
    if pct_count <= 0 then pct_sum = 0 end
    redis.call('HSET', key, 'count', fmt(count), 'pct_sum', fmt(pct_sum), 'pct_count', fmt(pct_count),
      'very_low', fmt(very_low), 'very_high', fmt(very_high))
    if pct_count > 0 then
      redis.call('HSET', key, 'mean_pct', fmt(pct_sum / pct_count),
        'very_low_share', fmt(very_low / pct_count), 'very_high_share', fmt(very_high / pct_count))
    else
      redis.call('HDEL', key, 'mean_pct', 'very_low_share', 'very_high_share')
    end
    redis.call('SADD', devset, c.device)
  end
end

if stored[1] and stored[2] ~= '1' then
  contribute({content = stored[3] or '', minute = stored[4] or '', device = stored[5] or '',
              pct = stored[6] or '', band = stored[7] or ''}, -1)
end

if op == 'd' then
  -- The fence outlives the row, so a replayed older insert stays a no-op.
  redis.call('HSET', fence, 'pos', pos, 'deleted', '1', 'content', '', 'minute', '', 'device', '',
    'pct', '', 'band', '')
else
  contribute(incoming, 1)
  redis.call('HSET', fence, 'pos', pos, 'deleted', '0', 'content', incoming.content, 'minute', incoming.minute,
    'device', incoming.device, 'pct', incoming.pct, 'band', incoming.band)
end

if advanced then rebuild_window() end

redis.call('HINCRBY', wm, 'applied', 1)
local max_pos = redis.call('HGET', wm, 'max_position')
if not max_pos or pos_gt(pos, max_pos) then
  redis.call('HSET', wm, 'max_position', pos)
end
return {1}
