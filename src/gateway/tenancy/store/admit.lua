-- Decides one request for a team, atomically across every gateway replica.
-- KEYS: 1 rate state, 2 in-flight by replica, 3 reserved cost by replica, 4 this period's usage
-- ARGV: 1 replica, 2 requests/min, 3 tokens/min, 4 max parallel (0: none),
--       5 allocated nano-dollars (-1: no credits), 6 estimated tokens, 7 estimated cost
-- Returns {verdict (0 admitted, 1 rate limited, 2 no credits), limit (1 requests, 2 tokens,
--          3 parallel), retry ms, spent, requests level x1000, tokens level x1000}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local replica = ARGV[1]
local rpm, tpm, maxpar = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local allocated = tonumber(ARGV[5])

-- The sum of a per-replica hash over replicas still alive (a crashed replica's calls expire
-- with its heartbeat key).
local function live(key)
  local sum = 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if all[i] == replica or redis.call('EXISTS', 'mg:replica:' .. all[i]) == 1 then
      sum = sum + tonumber(all[i + 1])
    else
      redis.call('HDEL', key, all[i])
    end
  end
  return sum
end

local spent = tonumber(redis.call('HGET', KEYS[4], 'spent') or '0')
if allocated >= 0 and allocated - spent - live(KEYS[3]) <= 0 then
  return {2, 0, 0, spent, 0, 0}
end

local state = redis.call('HMGET', KEYS[1], 'r', 'rt', 't', 'tt')
local function level(value, at, capacity)
  if capacity <= 0 then return 0 end
  local l = tonumber(value or capacity)
  local a = tonumber(at or now)
  return math.min(capacity, l + math.max(0, now - a) * capacity / 60)
end
local r = level(state[1], state[2], rpm)
local tk = level(state[3], state[4], tpm)

local kind, wait = 0, 0
if maxpar > 0 and live(KEYS[2]) >= maxpar then
  kind, wait = 3, 1000
elseif rpm > 0 and r < 1 then
  kind, wait = 1, math.ceil((1 - r) * 60000 / rpm)
elseif tpm > 0 and tk <= 0 then
  kind, wait = 2, math.ceil((1 - tk) * 60000 / tpm)
end
if kind == 0 then
  if rpm > 0 then r = r - 1 end
  if tpm > 0 then tk = tk - tonumber(ARGV[6]) end
  redis.call('HINCRBY', KEYS[2], replica, 1)
  redis.call('HINCRBY', KEYS[3], replica, ARGV[7])
end
if rpm > 0 or tpm > 0 then
  redis.call('HSET', KEYS[1], 'r', tostring(r), 'rt', tostring(now), 't', tostring(tk), 'tt', tostring(now))
  redis.call('EXPIRE', KEYS[1], 3600)
end
local verdict = 0
if kind ~= 0 then verdict = 1 end
return {verdict, kind, wait, spent, math.floor(r * 1000), math.floor(tk * 1000)}
