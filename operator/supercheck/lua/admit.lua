-- admit(uid, ref, priority, running_capacity, queued_capacity, weight, limits)
-- Idempotent per uid. Returns {state, granted_ms|seq, position, running, queued, weight,
--                              namespace_running, namespace_queued, limit, promoted...}
--   weight: the running slots the run takes at once (a JobRun's parallelism; at most the capacity
--           and its namespace's running share)
--   state: running | queued | rejected | released | rebuild
--   limit: what a queued run waits for (running: a free slot; namespace-running: its namespace's
--          share) or which limit rejected it (queued | namespace-queued); '' when running
local uid, ref = ARGV[1], ARGV[2]
local priority = tonumber(ARGV[3])
local running_cap, queued_cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local limits = parse_limits(ARGV[7])
local ns = namespace_of_ref(ref)
local ns_running_cap, ns_queued_cap = share_of(limits, ns)
local w = clamp_weight(tonumber(ARGV[6] or '1'), running_cap, ns_running_cap)

if redis.call('EXISTS', KEYS[7]) == 0 then return {'rebuild', 0, 0, 0, 0, 0, 0, 0, ''} end

local function answer(state, a, b, weight_, limit, promoted)
  return append({state, a, b, count(KEYS[1]), count(KEYS[2]), weight_, ns_count(KEYS[12], ns),
                 ns_count(KEYS[13], ns), limit}, promoted)
end

local function waits_for(uid_weight)
  if over_share(limits, ns, uid_weight) then return 'namespace-running' end
  return 'running'
end

if redis.call('ZSCORE', KEYS[8], uid) then return answer('released', 0, 0, 0, '', {}) end

-- A raised capacity (or a release that found nobody) can leave free slots behind a queue.
local promoted, stalled = promote(running_cap, limits)

if redis.call('SISMEMBER', KEYS[3], uid) == 1 then
  local granted = redis.call('HGET', KEYS[9], uid) or '0'
  return answer('running', granted, 0, weight(uid), '', promoted)
end
if redis.call('ZSCORE', KEYS[4], uid) then
  local rank = redis.call('ZRANK', KEYS[4], uid) + 1
  local seq = tonumber(redis.call('ZSCORE', KEYS[4], uid)) % 1099511627776
  return answer('queued', seq, rank, weight(uid), waits_for(weight(uid)), promoted)
end

redis.call('HSET', KEYS[5], uid, ref)
if w > 1 then redis.call('HSET', KEYS[11], uid, w) end
-- Runs now when the slots are free, its namespace's share has room, no run of its namespace waits
-- (strict order within a namespace) and no run within its share waits for slots (global order).
if count(KEYS[1]) + w <= running_cap and not over_share(limits, ns, w) and ns_count(KEYS[13], ns) == 0
    and not stalled then
  redis.call('SADD', KEYS[3], uid)
  redis.call('INCRBY', KEYS[1], w)
  ns_add(KEYS[12], ns, w)
  local granted = now_ms()
  redis.call('HSET', KEYS[9], uid, granted)
  return answer('running', granted, 0, w, '', promoted)
end
local limit = nil
if ns_queued_cap ~= nil and ns_count(KEYS[13], ns) >= ns_queued_cap then
  limit = 'namespace-queued'
elseif count(KEYS[2]) >= queued_cap then
  limit = 'queued'
end
if limit == nil then
  local seq = redis.call('INCR', KEYS[6])
  redis.call('ZADD', KEYS[4], (1000 - priority) * 1099511627776 + seq, uid)
  redis.call('INCR', KEYS[2])
  ns_add(KEYS[13], ns, 1)
  local rank = redis.call('ZRANK', KEYS[4], uid) + 1
  return answer('queued', seq, rank, w, waits_for(w), promoted)
end
redis.call('HDEL', KEYS[5], uid)
redis.call('HDEL', KEYS[11], uid)
return answer('rejected', 0, 0, 0, limit, promoted)
