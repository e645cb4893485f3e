#!/usr/bin/env bash
# Make sure the Redis 7 server the Redis-backend tests use is up at 127.0.0.1:6379.
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  exit 0
fi
echo "redis not answering on 127.0.0.1:6379; starting it" >&2
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
for _ in $(seq 1 50); do
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "redis did not come up on 127.0.0.1:6379" >&2
exit 1
