-- Applies a batch of row changes, in order, to every real-time aggregate; each change is fenced
-- by its row's last-applied position. Batching pays the per-call costs (dispatch, argument
-- encoding, the watermark's reads and writes) once per batch instead of once per change.
--
-- KEYS: 1 counts, 2 10m, 3 avg pct, 4 pct sum, 5 pct count, 6 device set, 7 watermark
-- ARGV: 1 minute-bucket key prefix, 2 device key prefix, 3 row-fence key prefix, 4 window minutes,
--       5 deleted-row fence TTL (ms), then FIELDS_PER_CHANGE fields per change:
--         op, position (decimal string), row id, content_id, event_ts_ms, epoch minute,
--         device, engagement_pct, pct band ('low', 'high' or '')
--       ('' stands for null)
-- Returns one entry per change, in order: 1 when applied, 0 when the fence says the change is
-- stale or a duplicate.
--
-- Row fences, minute buckets and device hashes are derived from ARGV and the stored fence, so
-- this script needs a standalone Redis (not Redis Cluster).
--
-- A row fence holds the row's last-applied position and contribution, plus `at`: the server
-- time (epoch ms) that change was applied at. `at` is informational (freshness measurement);
-- nothing compares or undoes it.

local HEADER, FIELDS_PER_CHANGE = 5, 9

local counts, win, avg, psum, pcount, devset, wm =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local minute_prefix, device_prefix, row_prefix = ARGV[1], ARGV[2], ARGV[3]
local window = tonumber(ARGV[4])
local deleted_fence_ttl_ms = ARGV[5]

if (#ARGV - HEADER) % FIELDS_PER_CHANGE ~= 0 then
  return redis.error_reply('apply_changes: ' .. (#ARGV - HEADER) .. ' change fields is not a multiple of '
    .. FIELDS_PER_CHANGE)
end

-- The call is atomic, so every change in it becomes visible at the same instant.
local now = redis.call('TIME')
local applied_at = string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))

-- Lua's default number-to-string keeps 14 digits; sums and means must round-trip exactly.
local function fmt(n) return string.format('%.17g', n) end

-- LSNs can exceed 2^53, so positions are compared as decimal strings, never as Lua numbers.
local function pos_gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

local function bucket_key(m) return minute_prefix .. string.format('%d', m) end

local function zadd_delta(key, member, delta)
  local v = tonumber(redis.call('ZINCRBY', key, delta, member))
  if v <= 0 then redis.call('ZREM', key, member) end
end

-- The watermark fields every change reads and moves. They live in locals for the whole call and
-- are written back once at the end; nothing else can touch them while the script runs.
local clock = redis.call('HGET', wm, 'max_event_ts_ms')
local clock_end_text = redis.call('HGET', wm, 'window_end_minute')
local clock_end = clock_end_text and tonumber(clock_end_text) or nil
local clock_moved = false
local applied = 0
local max_pos = redis.call('HGET', wm, 'max_position')
local max_pos_moved = false

-- The window of the change being applied: [win_start, win_end] in epoch minutes.
local win_start, win_end

local function in_window(m)
  if m == '' or not win_start then return false end
  local n = tonumber(m)
  return n >= win_start and n <= win_end
end

local function rebuild_window()
  local keys = {}
  for m = win_start, win_end do keys[#keys + 1] = bucket_key(m) end
  redis.call('ZUNIONSTORE', win, #keys, unpack(keys))
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
    -- Writes dominate a change's cost (a script's writes are propagated to the AOF one by one),
    -- so counters and derived fields go in one HSET.
    if pct_count > 0 then
      redis.call('HSET', key, 'count', fmt(count), 'pct_sum', fmt(pct_sum), 'pct_count', fmt(pct_count),
        'very_low', fmt(very_low), 'very_high', fmt(very_high), 'mean_pct', fmt(pct_sum / pct_count),
        'very_low_share', fmt(very_low / pct_count), 'very_high_share', fmt(very_high / pct_count))
    else
      redis.call('HSET', key, 'count', fmt(count), 'pct_sum', fmt(pct_sum), 'pct_count', fmt(pct_count),
        'very_low', fmt(very_low), 'very_high', fmt(very_high))
      redis.call('HDEL', key, 'mean_pct', 'very_low_share', 'very_high_share')
    end
    redis.call('SADD', devset, c.device)
  end
end

-- Applies the change whose fields start at ARGV[base + 1]; returns 1 if applied, 0 if stale.
local function apply_one(base)
  local op, pos, row_id, ts = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 5]
  local incoming = {content = ARGV[base + 4], minute = ARGV[base + 6], device = ARGV[base + 7],
                    pct = ARGV[base + 8], band = ARGV[base + 9]}
  local fence = row_prefix .. row_id

  -- Event-time clock: the largest event_ts of any insert/update/snapshot change delivered, applied
  -- or stale, so the window does not depend on arrival order. A delete's before-image never moves
  -- it: deletes are not validated (a row must never outlive its deletion), so the before-image of
  -- a quarantined far-future row would otherwise push the window past every real event.
  -- The window is [end - window + 1, end] in minutes.
  local old_end = clock_end
  win_end = old_end
  local advanced = false
  if op ~= 'd' and ts ~= '' and (not clock or tonumber(ts) > tonumber(clock)) then
    clock, clock_end_text, clock_end, clock_moved = ts, incoming.minute, tonumber(incoming.minute), true
    if old_end == nil or clock_end > old_end then
      win_end = clock_end
      advanced = true
    end
  end
  win_start = win_end and (win_end - window + 1) or nil

  if advanced and old_end then
    -- Buckets only exist inside the window; ones that fall out are never read again.
    for m = old_end - window + 1, math.min(old_end, win_start - 1) do
      redis.call('DEL', bucket_key(m))
    end
  end

  local stored = redis.call('HMGET', fence, 'pos', 'deleted', 'content', 'minute', 'device', 'pct', 'band')
  if stored[1] and not pos_gt(pos, stored[1]) then
    if advanced then rebuild_window() end
    return 0
  end

  if stored[1] and stored[2] ~= '1' then
    contribute({content = stored[3] or '', minute = stored[4] or '', device = stored[5] or '',
                pct = stored[6] or '', band = stored[7] or ''}, -1)
  end

  if op == 'd' then
    -- The fence outlives the row, so a replayed older insert stays a no-op, for as long as any
    -- change can be replayed; then it expires, so a stream of deletes cannot fill Redis.
    redis.call('DEL', fence)
    redis.call('HSET', fence, 'pos', pos, 'deleted', '1', 'at', applied_at)
    redis.call('PEXPIRE', fence, deleted_fence_ttl_ms)
  else
    contribute(incoming, 1)
    redis.call('HSET', fence, 'pos', pos, 'deleted', '0', 'content', incoming.content, 'minute', incoming.minute,
      'device', incoming.device, 'pct', incoming.pct, 'band', incoming.band, 'at', applied_at)
    if stored[2] == '1' then redis.call('PERSIST', fence) end
  end

  if advanced then rebuild_window() end

  applied = applied + 1
  if not max_pos or pos_gt(pos, max_pos) then
    max_pos, max_pos_moved = pos, true
  end
  return 1
end

local results = {}
for base = HEADER, #ARGV - FIELDS_PER_CHANGE, FIELDS_PER_CHANGE do
  results[#results + 1] = apply_one(base)
end

if clock_moved then
  redis.call('HSET', wm, 'max_event_ts_ms', clock, 'window_end_minute', clock_end_text)
end
if applied > 0 then
  -- The call is atomic, so one increment by the applied count is indistinguishable from one per change.
  redis.call('HINCRBY', wm, 'applied', applied)
end
if max_pos_moved then
  redis.call('HSET', wm, 'max_position', max_pos)
end
return results
