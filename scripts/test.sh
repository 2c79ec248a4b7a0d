#!/usr/bin/env bash
# Runs Ferry's whole test suite on a fresh machine: installs and starts the AWS emulators
# (DynamoDB Local + moto, scripts/emulators.sh), installs podman and builds the agent image
# (scripts/agent-image.sh), builds the binary, then runs every unit,
# property, conformance and end-to-end test of the workspace — embedded and AWS backends —
# with nextest when installed, else cargo test; then tests the Python package (mypy and pytest,
# scripts/python-tests.sh); then validates the OpenAPI document and fuzzes
# the API from it (scripts/api-fuzz.sh), and runs the dashboard's tests in a real headless
# Chromium on both backends (scripts/browser-tests.sh). The emulators are stopped at the end.
#
# Tests that need the emulators are `#[ignore]`d (a plain `cargo test` lists them as ignored,
# never as passed) and gated by `ferry_testkit::require_emulators`, which fails them when the
# emulators are not up. This script first checks that gate (one such test, run without the
# emulators' environment, must fail), then starts the emulators, checks them with
# `scripts/emulators.sh status`, and runs the normal and the ignored tests in one run.
#
# Honours FERRY_EMULATORS_DIR, FERRY_DDB_PORT and FERRY_MOTO_PORT (see scripts/emulators.sh),
# to run beside another pair of emulators.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "test.sh: error: $*" >&2; exit 1; }

have_nextest() { cargo nextest --version >/dev/null 2>&1; }

# The gate must fail an emulator test when the emulators are not up (here: not configured).
GATE_TEST=bundle_round_trip
gate_out="$(mktemp)"
trap 'rm -f "$gate_out"' EXIT
echo "test.sh: checking that an emulator test fails without the emulators ($GATE_TEST)" >&2
gate_run() {
    env -u FERRY_EMULATORS -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_DYNAMODB "$@" >"$gate_out" 2>&1
}
# --workspace (not -p ferry-aws): the same features as the full run below, so nothing is
# compiled twice.
if have_nextest; then
    gate_cmd=(cargo nextest run --locked --workspace --run-ignored only --no-fail-fast
        -E "package(ferry-aws) & binary(s3) & test(=$GATE_TEST)")
else
    gate_cmd=(cargo test --locked --workspace --test s3 -- --ignored --exact "$GATE_TEST")
fi
if gate_run "${gate_cmd[@]}"; then
    cat "$gate_out" >&2
    die "$GATE_TEST passed without the emulators: the emulator gate (ferry_testkit) is broken"
fi
grep -q "the AWS emulators are not up" "$gate_out" || {
    cat "$gate_out" >&2
    die "$GATE_TEST failed without the emulators, but not at the emulator gate (output above)"
}

./scripts/emulators.sh start
trap 'rm -f "$gate_out"; ./scripts/emulators.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(./scripts/emulators.sh env)"
export FERRY_EMULATORS=1
./scripts/emulators.sh status >&2 \
    || die "the AWS emulators are not up (scripts/emulators.sh status above): the ignored tests need them"

# The agent image (podman from Debian's packages, a base image made of Debian packages — no
# registry is reachable here), with this build's binary: the Fargate simulator runs launched
# tasks as real containers of it (tests/src/fargate_sim.rs).
./scripts/agent-image.sh install
./scripts/agent-image.sh base
cargo build --locked -p ferry-cli --bin ferry
# The Lambda entry points, run behind the Runtime API emulator (tests/src/lambda_rt.rs).
cargo build --locked -p ferry-functions --bins
export FERRY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/ferry"
./scripts/agent-image.sh build

if have_nextest; then
    cargo nextest run --locked --workspace --profile ci --run-ignored all
else
    cargo test --locked --workspace -- --include-ignored
fi

# The Python package (python/): mypy --strict, then pytest against this build's binary, on the
# embedded and the AWS backend (FERRY_EMULATORS=1 above); the venv is made once and reused.
./scripts/python-tests.sh

# The served OpenAPI document is valid, and the API answers what it documents when fuzzed
# from it (schemathesis against a real `ferry server`).
./scripts/api-fuzz.sh

# The dashboard in a real headless Chromium (Debian's, installed once; the venv is reused),
# on the embedded and the AWS backend (FERRY_EMULATORS=1 above). Screenshots of every page:
# target/browser-artifacts/ (FERRY_BROWSER_ARTIFACTS).
./scripts/browser-tests.sh
