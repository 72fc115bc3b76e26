"""The Lua scripts of the Redis state store: each read-modify-write is one of them, so it
is atomic on the server and costs one round trip (sent by digest, see
:meth:`faasflow.stores.redis.RedisStateStore`).

Every key a script touches is passed in ``KEYS`` (Redis Cluster routes a script by them
and refuses one whose keys hash to different slots).
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["CAS", "COMMIT", "SET_ADD", "SET_REMOVE", "digest"]


def digest(script: str) -> str:
    """The SHA1 that EVALSHA names ``script`` by."""
    return hashlib.sha1(script.encode()).hexdigest()


# KEYS[1] value key, KEYS[2] its folder index (optional);
# ARGV: has_expected, expected, has_new, new, ttl_ms (0 = none)
CAS: Final = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' then
  if tonumber(ARGV[5]) > 0 then
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
  else
    redis.call('SET', KEYS[1], ARGV[4])
  end
  if KEYS[2] then redis.call('SADD', KEYS[2], KEYS[1]) end
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# KEYS[1] set, KEYS[2] its counter, KEYS[3] its folder index (optional);
# ARGV: member, ttl_ms (0 = keep the deadline)
SET_ADD: Final = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], seq, ARGV[1])
  if KEYS[3] then redis.call('SADD', KEYS[3], KEYS[1]) end
  local left = redis.call('PTTL', KEYS[1])
  if tonumber(ARGV[2]) == 0 and left > 0 then redis.call('PEXPIRE', KEYS[2], left) end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return redis.call('ZCARD', KEYS[1])
"""

# KEYS[1] set, KEYS[2] its counter; ARGV: member
SET_REMOVE: Final = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) end
return removed
"""

# KEYS: the required keys, then the written keys in order (one per write, two for an
# index write: its sorted set and its hash), then the folder indexes.
# ARGV: n_required, n_written, then per required key (present, value), then per write
# (op, a, b, ttl_ms, folder) where folder is the position in KEYS of the written key's
# folder index (0: none) and op is
#   P put:    a = value
#   D delete
#   A append: a = value
#   X index put:  a = member, b = the score's sortable bytes
#   Z index drop: a = member
# An ordered index is a sorted set whose scores are all 0 and whose members are the
# score's sortable bytes followed by the member (so its lexicographic order is the
# index's order), and a hash from each member to its score's bytes (to move or drop it).
COMMIT: Final = """
local n = tonumber(ARGV[1])
local arg = 3
for i = 1, n do
  local current = redis.call('GET', KEYS[i])
  if ARGV[arg] == '1' then
    if current ~= ARGV[arg + 1] then return 0 end
  elseif current then
    return 0
  end
  arg = arg + 2
end
local k = n + 1
for _ = 1, tonumber(ARGV[2]) do
  local op, a, b = ARGV[arg], ARGV[arg + 1], ARGV[arg + 2]
  local ttl, folder = tonumber(ARGV[arg + 3]), tonumber(ARGV[arg + 4])
  local key = KEYS[k]
  if op == 'P' then
    if ttl > 0 then redis.call('SET', key, a, 'PX', ttl)
    else redis.call('SET', key, a) end
  elseif op == 'D' then
    redis.call('DEL', key)
  elseif op == 'A' then
    redis.call('RPUSH', key, a)
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  else
    local scores = KEYS[k + 1]
    local old = redis.call('HGET', scores, a)
    if old then redis.call('ZREM', key, old .. a) end
    if op == 'X' then
      redis.call('ZADD', key, 0, b .. a)
      redis.call('HSET', scores, a, b)
      if ttl > 0 then
        redis.call('PEXPIRE', key, ttl)
        redis.call('PEXPIRE', scores, ttl)
      end
    elseif old then
      redis.call('HDEL', scores, a)
    end
    k = k + 1
  end
  if folder > 0 then
    if op == 'D' or (op == 'Z' and redis.call('EXISTS', key) == 0) then
      redis.call('SREM', KEYS[folder], key)
    elseif op ~= 'Z' then
      redis.call('SADD', KEYS[folder], key)
    end
  end
  k = k + 1
  arg = arg + 5
end
return 1
"""
