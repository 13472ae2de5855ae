-- PROMOTIONS_CHANNEL is defined by supercheck.ledger.lua_preamble (from supercheck.vocabulary).
-- Shared by every ledger script (prepended by supercheck.ledger). Keys, in order:
--   KEYS[1] supercheck:capacity:running   integer counter (the contract's key)
--   KEYS[2] supercheck:capacity:queued    integer counter (the contract's key)
--   KEYS[3] supercheck:ledger:running     set of run uids holding a running slot
--   KEYS[4] supercheck:ledger:queue       sorted set: uid -> (1000 - priority) * 2^40 + arrival seq
--   KEYS[5] supercheck:ledger:runs        hash: uid -> "namespace/name" (whom to wake up)
--   KEYS[6] supercheck:ledger:seq         arrival counter
--   KEYS[7] supercheck:ledger:epoch       present while the ledger is valid; gone after a Redis wipe
--   KEYS[8] supercheck:ledger:released    sorted set: uid -> release time (ms); a released run never comes back
--   KEYS[9] supercheck:ledger:granted     hash: uid -> time (ms) its running slot was granted
--   KEYS[10] supercheck:ledger:stats      hash: avg_run_ms (for retry-after estimates)
--   KEYS[11] supercheck:ledger:weights    hash: uid -> running slots the run takes at once (absent: 1);
--            a JobRun with parallelism N takes N, all at once or none
-- The running counter always equals the sum of the weights of the running set, the queued counter the
-- size of the queue, because only these scripts touch them.

local function count(key)
  return tonumber(redis.call('GET', key) or '0')
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function weight(uid)
  return tonumber(redis.call('HGET', KEYS[11], uid) or '1')
end

-- Move the best queued runs into free running slots; returns {uid1, ref1, uid2, ref2, ...}.
-- Strict order: a head that needs more slots than are free waits for them, and nothing behind it
-- overtakes it (a job's slots are granted all at once, never a part of them).
local function promote(capacity)
  local out = {}
  while count(KEYS[1]) < capacity do
    local top = redis.call('ZRANGE', KEYS[4], 0, 0)
    if #top == 0 then break end
    local uid = top[1]
    local w = weight(uid)
    if w > capacity then
      -- Asked for more than the whole capacity (it was lowered since): it gets all of it.
      w = capacity
      redis.call('HSET', KEYS[11], uid, w)
    end
    if count(KEYS[1]) + w > capacity then break end
    redis.call('ZREM', KEYS[4], uid)
    redis.call('DECR', KEYS[2])
    redis.call('SADD', KEYS[3], uid)
    redis.call('INCRBY', KEYS[1], w)
    redis.call('HSET', KEYS[9], uid, now_ms())
    -- Every replica listens: the promoted run's daemon wakes up at once, wherever it lives.
    redis.call('PUBLISH', PROMOTIONS_CHANNEL, uid)
    out[#out + 1] = uid
    out[#out + 1] = redis.call('HGET', KEYS[5], uid) or ''
  end
  return out
end

local function append(dst, src)
  for i = 1, #src do dst[#dst + 1] = src[i] end
  return dst
end
