#!/usr/bin/env bash
# Validates Ferry's OpenAPI document and fuzzes the API from it, against a real server:
#   1. installs openapi-spec-validator 0.9.0 and schemathesis 4.32.5 (pinned) into a venv;
#   2. starts `ferry server start --port 0` in a fresh FERRY_HOME, with a queue, a deployment
#      and a run in it so the routes have something to find;
#   3. validates the served /v1/openapi.json (openapi-spec-validator);
#   4. runs schemathesis against it (bounded examples, ~1-2 minutes on 2 cores): no answer may
#      be a 5xx, and every status code, content type and body must be the documented one.
# Exits non-zero when the document is invalid or schemathesis reports a failure.
#
# Usage: scripts/api-fuzz.sh [DIR]           (works from any cwd)
#   DIR  where the venv and the run's files live (default: $FERRY_EMULATORS_DIR, else
#        <repo>/.emulators); the venv is reused when it has the pinned versions.
#
# Environment:
#   FERRY_BIN              the ferry binary (default: build target/debug/ferry)
#   FERRY_PYTHON           python used to make the venv (default: a python >= 3.12 found as
#                          python3.13/python3.12/pyenv's, else python3; CPython 3.11.7 makes
#                          hypothesis fail with "AST constructor recursion depth mismatch")
#   FERRY_FUZZ_EXAMPLES    schemathesis examples per operation (default: 100)
#   FERRY_FUZZ_SEED        schemathesis seed (default: random; printed by schemathesis)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-${FERRY_EMULATORS_DIR:-$REPO_ROOT/.emulators}}"
PYTHON="${FERRY_PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    candidates=(python3.13 python3.12)
    if command -v pyenv >/dev/null 2>&1; then
        candidates+=("$(pyenv root)"/versions/3.1[23].*/bin/python3)
    fi
    for p in "${candidates[@]}" python3; do
        if "$p" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            PYTHON="$p"; break
        fi
    done
    [[ -n "$PYTHON" ]] || PYTHON=python3
fi
EXAMPLES="${FERRY_FUZZ_EXAMPLES:-100}"
SCHEMATHESIS_VERSION="4.32.5"
VALIDATOR_VERSION="0.9.0"
VENV="$DIR/api-fuzz-venv"
MARKER="$VENV/.ferry-api-fuzz-versions"
WANT="schemathesis==$SCHEMATHESIS_VERSION openapi-spec-validator==$VALIDATOR_VERSION"
PY_VERSION="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

die() { echo "api-fuzz.sh: error: $*" >&2; exit 1; }
info() { echo "api-fuzz.sh: $*" >&2; }
command -v curl >/dev/null 2>&1 || die "'curl' is not installed"

# 1. The tools.
mkdir -p "$DIR"
if [[ "$(cat "$MARKER" 2>/dev/null || true)" != "$WANT python-$PY_VERSION" ]]; then
    info "installing $WANT into $VENV (python $PY_VERSION)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON (install python3-venv)"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $WANT \
        || die "pip could not install $WANT"
    echo "$WANT python-$PY_VERSION" >"$MARKER"
fi

# 2. A server in a fresh FERRY_HOME.
if [[ -z "${FERRY_BIN:-}" ]]; then
    (cd "$REPO_ROOT" && cargo build --quiet -p ferry-cli --bin ferry)
    FERRY_BIN="$REPO_ROOT/target/debug/ferry"
fi
[[ -x "$FERRY_BIN" ]] || die "FERRY_BIN=$FERRY_BIN is not an executable"
RUN="$(mktemp -d "$DIR/api-fuzz.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$RUN"
}
trap cleanup EXIT
export FERRY_HOME="$RUN/home"
FERRY_LOG=warn "$FERRY_BIN" server start --port 0 >"$RUN/server.out" 2>"$RUN/server.log" &
SERVER_PID=$!
URL=""
for _ in $(seq 1 300); do
    URL="$(grep -o 'http://[0-9.:]*' "$RUN/server.out" 2>/dev/null | head -n1 || true)"
    [[ -n "$URL" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$RUN/server.log" >&2; die "the server exited"; }
    sleep 0.1
done
[[ -n "$URL" ]] || { cat "$RUN/server.log" >&2; die "the server printed no URL in 30 s"; }
URL="${URL/0.0.0.0/127.0.0.1}"
info "server on $URL (FERRY_HOME=$FERRY_HOME)"

api() { curl --silent --show-error --fail-with-body -X "$1" "$URL$2" -H 'content-type: application/json' ${3:+--data "$3"}; }
api POST /v1/work-queues '{"name": "fuzz", "concurrency_limit": 2}' >/dev/null
api PUT /v1/infra/process/fuzz '{"launch_lead_seconds": 30}' >/dev/null
api PUT /v1/deployments '{"flow": "etl", "name": "daily", "entrypoint": "run.sh", "work_queue": "fuzz",
    "schedules": [{"cron": "0 * * * *"}], "parameters": {"n": 1}}' >/dev/null
api POST /v1/deployments/etl/daily/runs '{"idempotency_key": "fuzz"}' >/dev/null

# 3. The document.
curl --silent --show-error --fail "$URL/v1/openapi.json" -o "$RUN/openapi.json"
"$VENV/bin/openapi-spec-validator" "$RUN/openapi.json" || die "the OpenAPI document is invalid"

# 4. The fuzzing. Checks: no 5xx, only documented status codes / content types / bodies,
# 405 (with Allow) for undeclared methods. Not checked: positive_data_acceptance and
# negative_data_rejection (the schema cannot say that a name must exist or that a digest must
# match the body), use_after_free / ensure_resource_availability (need stateful links).
# Bundles are raw bytes: send what schemathesis generates as the body, as it is.
cat >"$RUN/ferry_fuzz_hooks.py" <<'PY'
import schemathesis


@schemathesis.serializer("application/gzip")
def raw_bytes(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode()}
PY
export PYTHONPATH="$RUN" SCHEMATHESIS_HOOKS=ferry_fuzz_hooks
SEED_ARGS=()
[[ -n "${FERRY_FUZZ_SEED:-}" ]] && SEED_ARGS=(--seed "$FERRY_FUZZ_SEED")
info "schemathesis: $EXAMPLES examples per operation"
# Run from $RUN: schemathesis keeps a cache (.schemathesis/) in its working directory.
(cd "$RUN" && "$VENV/bin/st" run "$RUN/openapi.json" --url "$URL" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,unsupported_method \
    --phases examples,coverage,fuzzing \
    --max-examples "$EXAMPLES" --workers 2 --request-timeout 10 \
    --suppress-health-check all --no-color "${SEED_ARGS[@]}") \
    || die "schemathesis found answers the document does not allow (see above)"
info "ok: the document is valid and the API answered as documented"
