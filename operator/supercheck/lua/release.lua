-- release(uid, running_capacity, duration_ms, limits)
-- Frees whatever the run holds (a running slot or a queue place), remembers that it is done,
-- and promotes the next queued runs into free slots in the same step.
-- Returns {removed, promoted...}; removed: running | queued | none | rebuild
local uid = ARGV[1]
local running_cap = tonumber(ARGV[2])
local duration = tonumber(ARGV[3])
local limits = parse_limits(ARGV[4])

if redis.call('EXISTS', KEYS[7]) == 0 then return {'rebuild'} end
redis.call('ZADD', KEYS[8], now_ms(), uid)
local ns = namespace_of(uid)
local removed = 'none'
if redis.call('SREM', KEYS[3], uid) == 1 then
  local w = weight(uid)
  redis.call('DECRBY', KEYS[1], w)
  ns_add(KEYS[12], ns, -w)
  removed = 'running'
  if duration and duration > 0 then
    local avg = tonumber(redis.call('HGET', KEYS[10], 'avg_run_ms') or duration)
    redis.call('HSET', KEYS[10], 'avg_run_ms', math.floor(avg * 0.8 + duration * 0.2))
  end
elseif redis.call('ZREM', KEYS[4], uid) == 1 then
  redis.call('DECR', KEYS[2])
  ns_add(KEYS[13], ns, -1)
  removed = 'queued'
end
redis.call('HDEL', KEYS[5], uid)
redis.call('HDEL', KEYS[9], uid)
redis.call('HDEL', KEYS[11], uid)
return append({removed}, (promote(running_cap, limits)))
