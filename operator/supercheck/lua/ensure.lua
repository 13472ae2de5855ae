-- ensure(uid, ref, kind, score, running_capacity, weight, limits)
-- Leak repair's other half: a run the cluster says holds a slot (kind running) or a queue place
-- (kind queued) but the ledger has lost. Never re-adds a released run. Returns {added, promoted...}.
-- The cluster's truth is restored as it is, even beyond a namespace's share: the runs hold it.
local uid, ref, kind = ARGV[1], ARGV[2], ARGV[3]
local score = tonumber(ARGV[4])
local running_cap = tonumber(ARGV[5])
local w = math.max(1, tonumber(ARGV[6] or '1'))
local limits = parse_limits(ARGV[7])
local ns = namespace_of_ref(ref)

if redis.call('EXISTS', KEYS[7]) == 0 then return {'rebuild'} end
if redis.call('ZSCORE', KEYS[8], uid) then return {'released'} end
if redis.call('SISMEMBER', KEYS[3], uid) == 1 or redis.call('ZSCORE', KEYS[4], uid) then
  return {'present'}
end
redis.call('HSET', KEYS[5], uid, ref)
if w > 1 then redis.call('HSET', KEYS[11], uid, w) end
if kind == 'running' then
  redis.call('SADD', KEYS[3], uid)
  redis.call('INCRBY', KEYS[1], w)
  ns_add(KEYS[12], ns, w)
  redis.call('HSET', KEYS[9], uid, now_ms())
  return {'added'}
end
redis.call('ZADD', KEYS[4], score, uid)
redis.call('INCR', KEYS[2])
ns_add(KEYS[13], ns, 1)
return append({'added'}, (promote(running_cap, limits)))
