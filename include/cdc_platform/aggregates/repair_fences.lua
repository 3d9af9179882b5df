-- Writes row fences for a repair, each only if it does not set its row back: a fence the stream
-- has moved past the repair's position stays as the stream left it.
--
-- ARGV: 1 row-fence key prefix, 2 deleted-row fence TTL (ms), then FIELDS_PER_FENCE fields per fence:
--         row id, position (decimal string), deleted ('1' or '0'), content_id, epoch minute, device,
--         engagement_pct, pct band ('' stands for null)
-- Returns how many fences were written.

local HEADER, FIELDS_PER_FENCE = 2, 8
local prefix, deleted_fence_ttl_ms = ARGV[1], ARGV[2]

if (#ARGV - HEADER) % FIELDS_PER_FENCE ~= 0 then
  return redis.error_reply('repair_fences: ' .. (#ARGV - HEADER) .. ' fence fields is not a multiple of '
    .. FIELDS_PER_FENCE)
end

-- LSNs can exceed 2^53, so positions are compared as decimal strings, never as Lua numbers.
local function pos_gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

local written = 0
for base = HEADER, #ARGV - FIELDS_PER_FENCE, FIELDS_PER_FENCE do
  local key, pos = prefix .. ARGV[base + 1], ARGV[base + 2]
  local stored = redis.call('HGET', key, 'pos')
  if not stored or not pos_gt(stored, pos) then
    redis.call('DEL', key)
    if ARGV[base + 3] == '1' then
      redis.call('HSET', key, 'pos', pos, 'deleted', '1')
      redis.call('PEXPIRE', key, deleted_fence_ttl_ms)
    else
      redis.call('HSET', key, 'pos', pos, 'deleted', '0', 'content', ARGV[base + 4], 'minute', ARGV[base + 5],
        'device', ARGV[base + 6], 'pct', ARGV[base + 7], 'band', ARGV[base + 8])
    end
    written = written + 1
  end
end
return written
