"""Where the cluster keeps what it shares in Redis: key names, and the scripts that change them.

Every change that depends on who owns a session is one Lua script, so it is atomic on the
Redis server: the owner and fencing token of a session are checked in the same step as the
write they guard. Layout (``ts:`` is the prefix):

- ``ts:fence``: the counter that numbers node incarnations (fencing tokens).
- ``ts:nodes``: hash node id -> fencing token of its registered incarnation.
- ``ts:addr``: hash node id -> its public WebSocket URL (admin views).
- ``ts:node:{id}``: the lease, holding the incarnation's token; it expires unrenewed.
- ``ts:dir:{code}``: the session directory entry, hash ``owner`` and ``fence``.
- ``ts:owned:{id}:{fence}``: set of the sessions an incarnation owns (what a takeover scans);
  a code reserved for a session not yet saved is only in the directory, with an expiry.
- ``ts:rec:{code}``: the session's latest record; ``ts:tail:{code}``: its event tail.
- ``ts:history`` (newest first, capped) and ``ts:closed:{code}``: closed sessions.
- ``ts:{db}:relay:{id}:{fence}``: the pub/sub channel of one incarnation (relayed traffic);
  channels are global to a Redis server, so the database number is part of the name.

Scripts compute keys of other sessions from the prefix, so the cluster needs one Redis
server (a primary with replicas is fine; Redis Cluster's sharding is not supported).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "ts:"
FENCE: Final = PREFIX + "fence"
NODES: Final = PREFIX + "nodes"
ADDRESSES: Final = PREFIX + "addr"
HISTORY: Final = PREFIX + "history"


def lease(node: str) -> str:
    return f"{PREFIX}node:{node}"


def directory(code: str) -> str:
    return f"{PREFIX}dir:{code}"


def owned(node: str, fence: int | str) -> str:
    return f"{PREFIX}owned:{node}:{fence}"


def record(code: str) -> str:
    return f"{PREFIX}rec:{code}"


def tail(code: str) -> str:
    return f"{PREFIX}tail:{code}"


def closed(code: str) -> str:
    return f"{PREFIX}closed:{code}"


def channel(database: int, node: str, fence: int | str) -> str:
    # pub/sub channels are global to a Redis server, not per database: the number keeps two
    # clusters on two databases of one Redis apart
    return f"{PREFIX}{database}:relay:{node}:{fence}"


# KEYS: fence counter, nodes, lease, addresses; ARGV: node id, ttl ms, url, the node's last
# token -> a new token, above the node's last one even if Redis lost the counter
REGISTER: Final = """
local fence = redis.call('INCR', KEYS[1])
if fence <= tonumber(ARGV[4]) then
  fence = tonumber(ARGV[4]) + 1
  redis.call('SET', KEYS[1], fence)
end
redis.call('HSET', KEYS[2], ARGV[1], fence)
redis.call('SET', KEYS[3], fence, 'PX', ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
return fence
"""

# KEYS: lease; ARGV: token, ttl ms -> 1 renewed, 0 lost (expired, or a newer incarnation)
RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease; ARGV: token -> forget the lease if it is still this incarnation's (clean stop)
RESIGN: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: directory entry; ARGV: node, token, seconds -> 1 reserved, 0 the code is taken.
# A reserved code expires unless a session's first save makes it permanent.
RESERVE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'fence', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: directory entry, record, tail, owned set; ARGV: node, token, record, tail limit, code,
# events... -> 1 written, 0 fenced (another incarnation owns the session), 2 no directory entry
# (Redis lost its data: the node reclaims its sessions once it has registered anew)
SAVE: Final = """
local d = redis.call('HMGET', KEYS[1], 'owner', 'fence')
if not d[1] then return 2 end
if d[1] ~= ARGV[1] or d[2] ~= ARGV[2] then return 0 end
redis.call('PERSIST', KEYS[1])
redis.call('SADD', KEYS[4], ARGV[5])
redis.call('SET', KEYS[2], ARGV[3])
if #ARGV > 5 then
  for i = 6, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
end
return 1
"""

# KEYS: directory entry, record, tail, owned set, history, closed; ARGV: node, token,
# closed record, code, history limit, retention s -> 1 closed, 0 fenced (with no directory
# entry left, as after Redis lost its data, the history record is still written)
CLOSE: Final = """
local d = redis.call('HMGET', KEYS[1], 'owner', 'fence')
if d[1] and (d[1] ~= ARGV[1] or d[2] ~= ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[4])
redis.call('LPUSH', KEYS[5], ARGV[3])
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[5]) - 1)
redis.call('SET', KEYS[6], ARGV[3], 'EX', ARGV[6])
return 1
"""

# KEYS: directory entry, old owned set, new owned set; ARGV: node, old token, new token, code
# -> 1 kept (now under the new token), 2 kept but its data was gone (save it again), 0 lost
RECLAIM: Final = """
local d = redis.call('HMGET', KEYS[1], 'owner', 'fence')
redis.call('SREM', KEYS[2], ARGV[4])
if d[1] and not (d[1] == ARGV[1] and d[2] == ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'fence', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
if d[1] then return 1 end
return 2
"""

# KEYS: dead owned set, my owned set, nodes, dead lease; ARGV: dead id, dead token, my id,
# my token, batch size, prefix[, one code] -> flat list: code, record, tail entries, ...
# Claims up to a batch of a dead incarnation's sessions (or the one code given, if it still has
# it); unregisters the incarnation once it has none left.
CLAIM: Final = """
if redis.call('GET', KEYS[4]) == ARGV[2] then return {} end
local out = {}
local codes
if ARGV[7] then
  codes = {}
  if redis.call('SISMEMBER', KEYS[1], ARGV[7]) == 1 then codes = {ARGV[7]} end
else
  codes = redis.call('SRANDMEMBER', KEYS[1], tonumber(ARGV[5]))
end
for _, code in ipairs(codes) do
  redis.call('SREM', KEYS[1], code)
  local dir = ARGV[6] .. 'dir:' .. code
  local d = redis.call('HMGET', dir, 'owner', 'fence')
  if d[1] == ARGV[1] and d[2] == ARGV[2] then
    local rec = redis.call('GET', ARGV[6] .. 'rec:' .. code)
    if rec then
      redis.call('HSET', dir, 'owner', ARGV[3], 'fence', ARGV[4])
      redis.call('SADD', KEYS[2], code)
      table.insert(out, code)
      table.insert(out, rec)
      table.insert(out, redis.call('LRANGE', ARGV[6] .. 'tail:' .. code, 0, -1))
    else
      redis.call('DEL', dir)
    end
  end
end
if redis.call('SCARD', KEYS[1]) == 0 and redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[3], ARGV[1])
end
return out
"""
