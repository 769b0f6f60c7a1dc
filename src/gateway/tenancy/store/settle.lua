-- Records a finished call: releases its reservation, counts its usage and cost.
-- KEYS: 1 rate state, 2 in-flight by replica, 3 reserved cost by replica, 4 this period's
--       usage, 5 the alias's totals
-- ARGV: 1 replica, 2 release (1: admitted by this store), 3 minus the reserved cost,
--       4 count (1: the call was answered), 5 cost, 6 prompt tokens, 7 completion tokens,
--       8 cached prompt tokens, 9 tokens used minus estimated, 10 tokens/min, 11 usage TTL s (0: none)
if ARGV[2] == '1' then
  if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
  if redis.call('HINCRBY', KEYS[3], ARGV[1], ARGV[3]) <= 0 then redis.call('HDEL', KEYS[3], ARGV[1]) end
end
if ARGV[4] ~= '1' then return 0 end
redis.call('HINCRBY', KEYS[4], 'spent', ARGV[5])
redis.call('HINCRBY', KEYS[4], 'requests', 1)
redis.call('HINCRBY', KEYS[4], 'prompt', ARGV[6])
redis.call('HINCRBY', KEYS[4], 'completion', ARGV[7])
redis.call('HINCRBY', KEYS[4], 'cached', ARGV[8])
if tonumber(ARGV[11]) > 0 then redis.call('EXPIRE', KEYS[4], ARGV[11]) end
redis.call('HINCRBY', KEYS[5], 'requests', 1)
redis.call('HINCRBY', KEYS[5], 'spent', ARGV[5])
redis.call('HINCRBY', KEYS[5], 'prompt', ARGV[6])
redis.call('HINCRBY', KEYS[5], 'completion', ARGV[7])
redis.call('HINCRBY', KEYS[5], 'cached', ARGV[8])
local tpm, delta = tonumber(ARGV[10]), tonumber(ARGV[9])
if tpm > 0 and delta ~= 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local s = redis.call('HMGET', KEYS[1], 't', 'tt')
  local l = math.min(tpm, tonumber(s[1] or tpm) + math.max(0, now - tonumber(s[2] or now)) * tpm / 60)
  redis.call('HSET', KEYS[1], 't', tostring(l - delta), 'tt', tostring(now))
  redis.call('EXPIRE', KEYS[1], 3600)
end
return 1
