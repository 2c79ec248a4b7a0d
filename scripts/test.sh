#!/usr/bin/env bash
# Runs Ferry's whole test suite on a fresh machine: installs and starts the AWS emulators
# (DynamoDB Local + moto, scripts/emulators.sh), builds the binary, then runs every unit,
# property, conformance and end-to-end test of the workspace — embedded and AWS backends —
# with nextest when installed, else cargo test. The emulators are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/emulators.sh start
trap './scripts/emulators.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(./scripts/emulators.sh env)"
export FERRY_EMULATORS=1

cargo build --locked -p ferry-cli --bin ferry
export FERRY_BIN="$PWD/target/debug/ferry"

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --workspace --profile ci
else
    cargo test --locked --workspace
fi
