#!/usr/bin/env bash
# Ferry quickstart: builds Ferry, starts the embedded control plane + an agent (`ferry dev`) in a
# throwaway FERRY_HOME, registers the two example deployments on a 10-second interval, and shows
# their runs completing. No cloud, no Docker. Ctrl-C stops it; it also stops by itself after
# QUICKSTART_SECONDS (default 45).
#
#   FERRY_PORT=4301 ./examples/quickstart.sh     # another port (default 4300)
#   FERRY_BIN=path/to/ferry ./examples/quickstart.sh   # an already built binary: no cargo build
#
# The binary is built with `cargo build --release` into CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${FERRY_PORT:-4300}"
# Refuse a port something already listens on: the commands below would talk to that server.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    who=""
    if command -v ss >/dev/null 2>&1; then
        who=$(ss -ltnpH "sport = :$PORT" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' \
            | head -1 | sed 's/users:(("\([^"]*\)",pid=\([0-9]*\)/\1 (pid \2)/' || true)
    fi
    echo "quickstart: port $PORT on 127.0.0.1 is already in use${who:+ by $who}: the quickstart would" \
        "talk to that server instead of its own." >&2
    echo "quickstart: stop it, or pick another port: FERRY_PORT=$((PORT + 1)) $0" >&2
    exit 1
fi

if [ -n "${FERRY_BIN:-}" ]; then
    FERRY="$FERRY_BIN"
else
    cargo build --release -p ferry-cli --bin ferry
    FERRY="${CARGO_TARGET_DIR:-$PWD/target}/release/ferry"
    case "$FERRY" in /*) ;; *) FERRY="$PWD/$FERRY" ;; esac
fi
if [ ! -x "$FERRY" ]; then
    echo "quickstart: $FERRY is not an executable ferry binary (FERRY_BIN, or CARGO_TARGET_DIR/release/ferry)" >&2
    exit 1
fi

export FERRY_HOME="${FERRY_HOME:-$(mktemp -d)}"
export FERRY_API_URL="http://127.0.0.1:${PORT}"
FERRY_LOG="${FERRY_LOG:-warn}" "$FERRY" dev --port "$PORT" --tick-interval 1s --poll-interval 0.2 &
DEV=$!
trap 'kill -INT $DEV 2>/dev/null; wait $DEV 2>/dev/null || true' EXIT
up=""
for _ in $(seq 1 100); do
    if ! kill -0 "$DEV" 2>/dev/null; then
        echo "quickstart: ferry dev exited before it served the API on port $PORT (see its error above)" >&2
        exit 1
    fi
    if curl -fsS "$FERRY_API_URL/v1/health" >/dev/null 2>&1; then up=1; break; fi
    sleep 0.2
done
if [ -z "$up" ]; then
    echo "quickstart: ferry dev did not answer on $FERRY_API_URL within 20 s" >&2
    exit 1
fi

cd examples
"$FERRY" deployment build flows/hello.py:hello -n every-10s --path . --interval 10s \
    --param name=Ferry --param times=3 -o "$FERRY_HOME/hello.yaml" -a
"$FERRY" deployment build flows/backup.sh -n every-10s --path . --interval 10s \
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
