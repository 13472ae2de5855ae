-- rebuild(epoch, running_capacity, seq_floor, limits, n_running, [uid, ref, weight]..., n_queued,
--         [uid, ref, score, weight]..., n_released, [uid]...)
-- Replaces the ledger with the cluster's truth, only while no epoch exists (after a Redis wipe,
-- or on a first start). Another replica's rebuild wins a race: returns {'exists'} then.
-- The per-namespace counts are rebuilt from the same runs (their refs name the namespace).
if redis.call('EXISTS', KEYS[7]) == 1 then return {'exists'} end
local epoch, running_cap, seq_floor = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local limits = parse_limits(ARGV[4])
for i = 1, 13 do
  if i ~= 7 and i ~= 10 then redis.call('DEL', KEYS[i]) end
end
redis.call('SET', KEYS[1], 0)
redis.call('SET', KEYS[2], 0)
local i = 5
local n = tonumber(ARGV[i]); i = i + 1
local t = now_ms()
for _ = 1, n do
  local uid, ref, w = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]); i = i + 3
  if w > 1 then redis.call('HSET', KEYS[11], uid, w) end
  if redis.call('SADD', KEYS[3], uid) == 1 then
    redis.call('INCRBY', KEYS[1], w)
    ns_add(KEYS[12], namespace_of_ref(ref), w)
  end
  redis.call('HSET', KEYS[5], uid, ref)
  redis.call('HSET', KEYS[9], uid, t)
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local uid, ref, score, w = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]); i = i + 4
  if w > 1 then redis.call('HSET', KEYS[11], uid, w) end
  if redis.call('SISMEMBER', KEYS[3], uid) == 0 and redis.call('ZADD', KEYS[4], score, uid) == 1 then
    redis.call('INCR', KEYS[2])
    ns_add(KEYS[13], namespace_of_ref(ref), 1)
  end
  redis.call('HSET', KEYS[5], uid, ref)
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZADD', KEYS[8], t, ARGV[i]); i = i + 1
end
redis.call('SET', KEYS[6], seq_floor)
redis.call('SET', KEYS[7], epoch)
return append({'rebuilt'}, (promote(running_cap, limits)))
