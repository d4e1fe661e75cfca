"""Lua scripts: each moves a message between two keys in one step, so no copy is lost or doubled.

Every key a script touches is passed in KEYS. Times come from the Redis server (`TIME`), so
consumers on hosts with skewed clocks agree on when a retry is due.
"""

from __future__ import annotations

NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

SCHEDULE_RETRY = (
    NOW_MS
    + """
-- KEYS[1] retry zset; ARGV[1] member, ARGV[2] delay in ms
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now + tonumber(ARGV[2])
"""
)

DUE_RETRIES = (
    NOW_MS
    + """
-- KEYS[1] retry zset; ARGV[1] most members to return. Read-only.
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

PROMOTE_RETRY = """
-- KEYS[1] retry zset, KEYS[2] target stream; ARGV: member, body, queue, reason.
-- Only the caller that removes the member appends it, so a retry is never doubled.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], '*', 'body', ARGV[2], 'queue', ARGV[3], 'reason', ARGV[4])
end
return false
"""

REVIVE_DEAD = """
-- KEYS[1] dead-letter stream, KEYS[2] target stream; ARGV: entry id, body, queue.
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], '*', 'body', ARGV[2], 'queue', ARGV[3])
end
return false
"""

DELETE_IDLE_CONSUMER = """
-- KEYS[1] stream; ARGV: group, consumer. Deleting a consumer drops its pending entries,
-- so only one with nothing pending is deleted (checked and done in one step).
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""
