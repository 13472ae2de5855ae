-- admit(uid, ref, priority, running_capacity, queued_capacity, weight)
-- Idempotent per uid. Returns {state, granted_ms|seq, position, running, queued, weight, promoted...}
--   weight: the running slots the run takes at once (a JobRun's parallelism; at most the capacity)
--   state: running | queued | rejected | released | rebuild
local uid, ref = ARGV[1], ARGV[2]
local priority = tonumber(ARGV[3])
local running_cap, queued_cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local w = math.max(1, math.min(tonumber(ARGV[6] or '1'), running_cap))

if redis.call('EXISTS', KEYS[7]) == 0 then return {'rebuild', 0, 0, 0, 0, 0} end
if redis.call('ZSCORE', KEYS[8], uid) then return {'released', 0, 0, count(KEYS[1]), count(KEYS[2]), 0} end

-- A raised capacity (or a release that found nobody) can leave free slots behind a queue.
local promoted = promote(running_cap)

if redis.call('SISMEMBER', KEYS[3], uid) == 1 then
  local granted = redis.call('HGET', KEYS[9], uid) or '0'
  return append({'running', granted, 0, count(KEYS[1]), count(KEYS[2]), weight(uid)}, promoted)
end
if redis.call('ZSCORE', KEYS[4], uid) then
  local rank = redis.call('ZRANK', KEYS[4], uid) + 1
  local seq = tonumber(redis.call('ZSCORE', KEYS[4], uid)) % 1099511627776
  return append({'queued', seq, rank, count(KEYS[1]), count(KEYS[2]), weight(uid)}, promoted)
end

redis.call('HSET', KEYS[5], uid, ref)
if w > 1 then redis.call('HSET', KEYS[11], uid, w) end
if count(KEYS[1]) + w <= running_cap and redis.call('ZCARD', KEYS[4]) == 0 then
  redis.call('SADD', KEYS[3], uid)
  redis.call('INCRBY', KEYS[1], w)
  local granted = now_ms()
  redis.call('HSET', KEYS[9], uid, granted)
  return append({'running', granted, 0, count(KEYS[1]), count(KEYS[2]), w}, promoted)
end
if count(KEYS[2]) < queued_cap then
  local seq = redis.call('INCR', KEYS[6])
  redis.call('ZADD', KEYS[4], (1000 - priority) * 1099511627776 + seq, uid)
  redis.call('INCR', KEYS[2])
  local rank = redis.call('ZRANK', KEYS[4], uid) + 1
  return append({'queued', seq, rank, count(KEYS[1]), count(KEYS[2]), w}, promoted)
end
redis.call('HDEL', KEYS[5], uid)
redis.call('HDEL', KEYS[11], uid)
return append({'rejected', 0, 0, count(KEYS[1]), count(KEYS[2]), 0}, promoted)
