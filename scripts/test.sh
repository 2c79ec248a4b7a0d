#!/usr/bin/env bash
# Runs Ferry's whole test suite on a fresh machine: builds the binary, then every unit,
# property and end-to-end test of the workspace (nextest when installed, else cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked -p ferry-cli --bin ferry
export FERRY_BIN="$PWD/target/debug/ferry"

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --workspace --profile ci
else
    cargo test --locked --workspace
fi
