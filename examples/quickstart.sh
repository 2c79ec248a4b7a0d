#!/usr/bin/env bash
# Ferry quickstart: builds Ferry, starts the embedded control plane + an agent (`ferry dev`) in a
# throwaway FERRY_HOME, registers the two example deployments on a 10-second interval, and shows
# their runs completing. No cloud, no Docker. Ctrl-C stops it; it also stops by itself after
# QUICKSTART_SECONDS (default 45).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ferry-cli --bin ferry
FERRY="$PWD/target/release/ferry"

export FERRY_HOME="${FERRY_HOME:-$(mktemp -d)}"
PORT="${FERRY_PORT:-4300}"
export FERRY_API_URL="http://127.0.0.1:${PORT}"
FERRY_LOG="${FERRY_LOG:-warn}" "$FERRY" dev --port "$PORT" --tick-interval 1s --poll-interval 0.2 &
DEV=$!
trap 'kill -INT $DEV 2>/dev/null; wait $DEV 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fsS "$FERRY_API_URL/v1/health" >/dev/null 2>&1 && break; sleep 0.2; done

cd examples
"$FERRY" deployment build flows/hello.py:hello -n every-10s --path . --interval 10 \
    --param name=Ferry --param times=3 -o "$FERRY_HOME/hello.yaml" -a
"$FERRY" deployment build flows/backup.sh -n every-10s --path . --interval 10 \
    --param target=s3://backups -o "$FERRY_HOME/backup.yaml" -a
echo
echo "== an ad-hoc run of hello, watched until it ends:"
"$FERRY" deployment run hello/every-10s --param name=you --watch
echo
echo "== scheduled runs completing (every 10 s) for ${QUICKSTART_SECONDS:-45} s:"
end=$((SECONDS + ${QUICKSTART_SECONDS:-45}))
while [ $SECONDS -lt $end ]; do
    sleep 10
    "$FERRY" flow-run ls --state completed --limit 6
    echo
done
last=$("$FERRY" flow-run ls --deployment backup/every-10s --state completed --limit 1 --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["id"] if r else "")')
if [ -n "$last" ]; then
    echo "== logs of backup run $last:"
    "$FERRY" flow-run logs "$last"
fi
