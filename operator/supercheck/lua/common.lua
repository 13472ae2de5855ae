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
--   KEYS[12] supercheck:ledger:namespace-running  hash: namespace -> running slots its runs hold
--   KEYS[13] supercheck:ledger:namespace-queued   hash: namespace -> its runs in the queue
--            (a field is deleted when it reaches 0, so each hash lists only namespaces holding something)
-- The running counter always equals the sum of the weights of the running set, the queued counter the
-- size of the queue, and the namespace hashes the same split by namespace (the part of the run's ref
-- before the '/'), because only these scripts touch them.
--
-- Fair share: every script that may promote receives the cluster admin's per-namespace limits as JSON
-- (supercheck.fairshare.FairShare.ledger_json): {"running": n, "queued": n, "namespaces": {"ns": {...}}},
-- a limit left out where there is none; a namespace listed takes its own entry, any other the defaults.

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

-- The namespace of a ref "namespace/name" ('' for a run the ledger knows no ref of).
local function namespace_of_ref(ref)
  return string.match(ref or '', '^([^/]*)') or ''
end

local function namespace_of(uid)
  return namespace_of_ref(redis.call('HGET', KEYS[5], uid))
end

local function ns_count(key, ns)
  return tonumber(redis.call('HGET', key, ns) or '0')
end

local function ns_add(key, ns, delta)
  if redis.call('HINCRBY', key, ns, delta) <= 0 then redis.call('HDEL', key, ns) end
end

local function parse_limits(text)
  if not text or text == '' then return {namespaces = {}} end
  local limits = cjson.decode(text)
  if type(limits.namespaces) ~= 'table' then limits.namespaces = {} end
  return limits
end

-- A namespace's running and queued limits (nil: no limit).
local function share_of(limits, ns)
  local own = limits.namespaces[ns]
  if own then return own.running, own.queued end
  return limits.running, limits.queued
end

-- The slots a run takes at once: what it asked, at most the capacity and its namespace's running share.
local function clamp_weight(w, capacity, ns_running)
  w = math.max(1, math.min(w, capacity))
  if ns_running and w > ns_running then w = ns_running end
  return w
end

-- True when the namespace's runs hold so many slots that w more would exceed its running share.
local function over_share(limits, ns, w)
  local cap = share_of(limits, ns)
  return cap ~= nil and ns_count(KEYS[12], ns) + w > cap
end

-- Move the best queued runs into free running slots; returns {uid1, ref1, uid2, ref2, ...}, stalled.
-- Order: by priority, then arrival. A run whose namespace holds its whole running share is passed
-- over, and so is every later run of that namespace (strict order within a namespace), without
-- blocking other namespaces. A run within its share that needs more slots than are free waits for
-- them at the head, and nothing behind it overtakes it (a job's slots are granted all at once,
-- never a part of them); `stalled` is then true: a newcomer must queue behind it.
local function promote(capacity, limits)
  local out = {}
  local passed = 0  -- runs at the front left in the queue for their namespace's share
  local blocked = {}
  while count(KEYS[1]) < capacity do
    local top = redis.call('ZRANGE', KEYS[4], passed, passed)
    if #top == 0 then return out, false end
    local uid = top[1]
    local ns = namespace_of(uid)
    local w = weight(uid)
    local clamped = clamp_weight(w, capacity, (share_of(limits, ns)))
    if clamped ~= w then
      -- Asked for more than the capacity or its namespace's share (lowered since): it gets all of it.
      w = clamped
      if w > 1 then redis.call('HSET', KEYS[11], uid, w) else redis.call('HDEL', KEYS[11], uid) end
    end
    if blocked[ns] or over_share(limits, ns, w) then
      blocked[ns] = true
      passed = passed + 1
    elseif count(KEYS[1]) + w > capacity then
      return out, true
    else
      redis.call('ZREM', KEYS[4], uid)
      redis.call('DECR', KEYS[2])
      ns_add(KEYS[13], ns, -1)
      redis.call('SADD', KEYS[3], uid)
      redis.call('INCRBY', KEYS[1], w)
      ns_add(KEYS[12], ns, w)
      redis.call('HSET', KEYS[9], uid, now_ms())
      -- Every replica listens: the promoted run's daemon wakes up at once, wherever it lives.
      redis.call('PUBLISH', PROMOTIONS_CHANNEL, uid)
      out[#out + 1] = uid
      out[#out + 1] = redis.call('HGET', KEYS[5], uid) or ''
    end
  end
  return out, true
end

local function append(dst, src)
  for i = 1, #src do dst[#dst + 1] = src[i] end
  return dst
end
