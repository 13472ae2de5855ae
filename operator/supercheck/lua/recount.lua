-- recount()
-- The per-namespace counts recomputed from the membership they count (the running set with its
-- weights, the queue, the refs): after an upgrade from a ledger without them, or any drift the leak
-- repair finds. Returns {'recounted'} or {'rebuild'}.
if redis.call('EXISTS', KEYS[7]) == 0 then return {'rebuild'} end
redis.call('DEL', KEYS[12], KEYS[13])
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  ns_add(KEYS[12], namespace_of(uid), weight(uid))
end
for _, uid in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  ns_add(KEYS[13], namespace_of(uid), 1)
end
return {'recounted'}
