#!/usr/bin/env bash
# Task-per-run benchmarks (issue 9) against DynamoDB Local + moto (started here if needed):
#   1. dispatch latency (run created → RunTask called) through the table's stream, RunTask calls
#      per run with every stream record delivered twice, DynamoDB requests/RCU/WCU per launched
#      run (shared/ferry-aws/examples/launch.rs, release build);
#   2. lateness of pre-launched scheduled runs on the Fargate simulator: real containers of the
#      agent image (tests/examples/fargate_lateness.rs; needs podman and the image);
#   3. the agent image's size.
# Prints tables. Usage: bench/launch.sh [RUNS=100] [SCHEDULED_RUNS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/emulators.sh start
eval "$(./scripts/emulators.sh env)"
export FERRY_EMULATORS=1
cargo run --release -q -p ferry-aws --example launch -- "${1:-100}"
echo
./scripts/agent-image.sh install >/dev/null
./scripts/agent-image.sh base >/dev/null
cargo build -q -p ferry-cli --bin ferry
export FERRY_BIN="$PWD/target/debug/ferry"
./scripts/agent-image.sh build >/dev/null
cargo run -q -p ferry-tests --example fargate_lateness -- "${2:-10}"
echo
echo "agent image (debug binary, stripped; a release binary is smaller):"
./scripts/agent-image.sh size
