#!/usr/bin/env bash
# Builds Ferry's three Lambda functions (ferry-api-lambda, ferry-tick-lambda,
# ferry-dispatch-lambda) as zips for the provided.al2023 runtime on x86_64, in cargo-lambda's
# layout: <target dir>/lambda/<binary>/bootstrap.zip (the target dir is cargo's:
# CARGO_TARGET_DIR, else <repo>/target). See docs/lambda.md.
#
# cargo-lambda (pinned, from PyPI, which brings zig) is installed in a venv under the state
# directory on first use. It links with zig for an old glibc (GLIBC_TARGET below: Lambda's
# provided.al2023 has glibc 2.34, provided.al2 2.26) using the x86_64 Rust std that is already
# installed — nothing is downloaded by rustup. Each bootstrap's newest required glibc symbol is
# checked against 2.34.
#
# Usage: scripts/package-functions.sh [--measure] [--runs N]     (works from any cwd)
#   (no flag)   install cargo-lambda if needed, build the three zips, unpack each bootstrap next
#               to its zip, check the glibc it needs, print each zip's size
#   --measure   also measure each bootstrap's init time locally (process start → the runtime's
#               first /next request, behind the project's Runtime API emulator; median of N
#               starts, default 5) and print a table: binary, zip size, init time
#
# Environment:
#   FERRY_CARGO_LAMBDA_DIR  state directory (the venv)     (default: <repo>/.cargo-lambda)
#   FERRY_PYTHON            python used to make the venv   (default: python3)
#   CARGO_TARGET_DIR        honoured as by cargo
#
# The emulator tests run against these bootstraps with
#   FERRY_LAMBDA_BIN_DIR=<target>/lambda cargo test -p ferry-tests --test lambda -- --include-ignored
#
# Time on 2 cores: cargo-lambda install ~20 s; a cold release build of the three functions
# ~10 min (they share one build); a rebuild after a change to Ferry's crates ~2-4 min.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FERRY_CARGO_LAMBDA_DIR:-$REPO_ROOT/.cargo-lambda}"
PYTHON="${FERRY_PYTHON:-python3}"

CARGO_LAMBDA_VERSION="1.9.2"
# The oldest glibc the bootstraps may need. 2.17 also covers provided.al2 (2.26).
GLIBC_TARGET="2.17"
# Lambda's provided.al2023 glibc: a bootstrap needing a newer symbol would not start there.
LAMBDA_GLIBC="2.34"
FUNCTIONS=(ferry-api-lambda ferry-tick-lambda ferry-dispatch-lambda)

die() { echo "package-functions.sh: error: $*" >&2; exit 1; }
info() { echo "package-functions.sh: $*" >&2; }

measure=0
runs=5
while [ $# -gt 0 ]; do
    case "$1" in
        --measure) measure=1 ;;
        --runs) shift; runs="${1:?--runs needs a number}" ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

install_cargo_lambda() {
    local marker="$DIR/venv/.ferry-cargo-lambda-version"
    if [ -x "$DIR/venv/bin/cargo-lambda" ] && [ "$(cat "$marker" 2>/dev/null)" = "$CARGO_LAMBDA_VERSION" ]; then
        return
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' is not installed; cargo-lambda comes from PyPI"
    info "installing cargo-lambda $CARGO_LAMBDA_VERSION (with zig) into $DIR/venv"
    mkdir -p "$DIR"
    [ -x "$DIR/venv/bin/pip" ] || "$PYTHON" -m venv "$DIR/venv" \
        || die "cannot create a venv with $PYTHON (on Debian: apt-get install python3-venv)"
    "$DIR/venv/bin/pip" install --quiet "cargo-lambda==$CARGO_LAMBDA_VERSION" \
        || die "pip install cargo-lambda==$CARGO_LAMBDA_VERSION failed (is PyPI reachable?)"
    echo "$CARGO_LAMBDA_VERSION" >"$marker"
}

target_dir() {
    cargo metadata --format-version 1 --no-deps --manifest-path "$REPO_ROOT/Cargo.toml" \
        | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# The newest GLIBC_x.y symbol version a binary needs.
glibc_needed() {
    objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1
}

size_of() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1048576 }'; }

install_cargo_lambda
# cargo-lambda finds zig as `python-zig` (the ziglang wheel) on PATH.
export PATH="$DIR/venv/bin:$PATH"
TARGET_DIR="$(target_dir)"
LAMBDA_DIR="$TARGET_DIR/lambda"

info "building ${FUNCTIONS[*]} (release, x86_64, glibc $GLIBC_TARGET) into $LAMBDA_DIR"
(cd "$REPO_ROOT" && cargo lambda build --release --locked \
    --target "x86_64-unknown-linux-gnu.$GLIBC_TARGET" \
    --output-format zip -p ferry-functions --bins)

# Each zip is unpacked next to itself (<target>/lambda/<binary>/bootstrap): what the checks
# below, --measure and the emulator tests (FERRY_LAMBDA_BIN_DIR=<target>/lambda) run.
unpacked="$LAMBDA_DIR"
for f in "${FUNCTIONS[@]}"; do
    zip="$LAMBDA_DIR/$f/bootstrap.zip"
    [ -f "$zip" ] || die "cargo lambda build left no $zip"
    rm -f "$unpacked/$f/bootstrap"
    unzip -q -o "$zip" bootstrap -d "$unpacked/$f" || die "$zip holds no bootstrap"
    chmod +x "$unpacked/$f/bootstrap"
    need="$(glibc_needed "$unpacked/$f/bootstrap")"
    if [ "$(printf '%s\n%s\n' "$need" "$LAMBDA_GLIBC" | sort -V | tail -1)" != "$LAMBDA_GLIBC" ]; then
        die "$f's bootstrap needs glibc $need, newer than provided.al2023's $LAMBDA_GLIBC"
    fi
    echo "$zip $(size_of "$zip") bytes ($(mb "$(size_of "$zip")")), bootstrap $(mb "$(size_of "$unpacked/$f/bootstrap")"), needs glibc >= $need"
done

[ "$measure" = 1 ] || exit 0

info "measuring init times (median of $runs starts each)"
bins=()
for f in "${FUNCTIONS[@]}"; do bins+=("$unpacked/$f/bootstrap"); done
times="$(cd "$REPO_ROOT" && cargo run --quiet --locked -p ferry-tests --example lambda_init -- --runs "$runs" "${bins[@]}")" \
    || die "measuring the init times failed"
printf '\n| binary | zip size | init time (median of %s; min-max) |\n| --- | --- | --- |\n' "$runs"
for f in "${FUNCTIONS[@]}"; do
    line="$(grep -F "$unpacked/$f/bootstrap" <<<"$times")"
    median="$(cut -f2 <<<"$line")"; lo="$(cut -f3 <<<"$line")"; hi="$(cut -f4 <<<"$line")"
    zip="$LAMBDA_DIR/$f/bootstrap.zip"
    echo "| $f | $(mb "$(size_of "$zip")") ($(size_of "$zip") B) | $median ms ($lo-$hi) |"
done
