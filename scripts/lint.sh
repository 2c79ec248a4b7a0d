#!/usr/bin/env bash
# Static checks CI runs before the tests (.ci/run): formatting, clippy with -D warnings, and
# no unused dependency in any Cargo.toml of the workspace (cargo-machete).
#
# cargo-machete is installed here, pinned, from crates.io with `cargo install --locked` into
# ~/.cargo/bin, and only when that version is not already there (a repeated run costs nothing).
# cargo-machete reads the source for `use`/paths of each dependency; a dependency it cannot see
# (used only through a macro, a feature, or a build script) is listed, with the reason, under
# `[package.metadata.cargo-machete] ignored` in that crate's Cargo.toml.
#
# Usage: scripts/lint.sh [machete]     (no argument: all checks; `machete`: only that one)
set -euo pipefail
cd "$(dirname "$0")/.."

MACHETE_VERSION="0.9.2"

install_machete() {
    local bin="${CARGO_HOME:-$HOME/.cargo}/bin/cargo-machete" got=""
    if [[ -x "$bin" ]]; then
        got="$("$bin" --version 2>/dev/null | awk '{print $NF}')"
    fi
    if [[ "$got" != "$MACHETE_VERSION" ]]; then
        echo "lint.sh: installing cargo-machete $MACHETE_VERSION (found: ${got:-none})" >&2
        cargo install --locked --quiet "cargo-machete@$MACHETE_VERSION"
    fi
}

machete() {
    install_machete
    # --with-metadata: cargo metadata resolves renamed crates (e.g. `package = ...`) correctly.
    cargo machete --with-metadata
}

case "${1:-all}" in
    machete) machete ;;
    all)
        cargo fmt --all --check
        cargo clippy --locked --workspace --all-targets -- -D warnings
        machete
        ;;
    *) echo "usage: $0 [machete]" >&2; exit 2 ;;
esac
