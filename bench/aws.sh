#!/usr/bin/env bash
# AWS-backend benchmarks against DynamoDB Local + moto (started here if needed): DynamoDB
# capacity per run lifecycle and the tick with many deployments (shared/ferry-aws/examples/
# capacity.rs), then exactly-once at scale with several agents (bench/aws_scale.py).
# Usage: bench/aws.sh [DEPLOYMENTS=10000] [AGENTS=5] [RUNS=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/emulators.sh start
eval "$(./scripts/emulators.sh env)"
cargo run --release -q -p ferry-aws --example capacity -- "${1:-10000}"
echo
python3 bench/aws_scale.py --agents "${2:-5}" --runs "${3:-1000}"
