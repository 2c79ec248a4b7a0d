#!/usr/bin/env bash
# Tests the Python package (python/, import name `ferry`, distribution ferry-flows):
#   1. makes a venv once (reused while its marker lists the same Python and pins) and installs
#      pytest and mypy into it (pinned below);
#   2. installs ./python into it (`pip install ./python`, every time: the package under test);
#   3. runs `mypy --strict` on the package and its tests (and on the package as 3.9 code), then pytest on python/tests with
#      FERRY_BIN set: unit tests, and end-to-end tests that drive the real `ferry` binary, a
#      real server and real agents (and, with FERRY_EMULATORS=1, the AWS backend too).
# Exits non-zero on any failure, including a run that collected no test (pytest's exit 5).
#
# Usage: scripts/python-tests.sh [PYTEST ARGS...]        (works from any cwd)
#
# Environment:
#   FERRY_BIN             the ferry binary (default: cargo build -p ferry-cli --bin ferry, in
#                         CARGO_TARGET_DIR when set)
#   FERRY_PY_TESTS_DIR    where the venv lives (default: CARGO_TARGET_DIR, else <repo>/target)
#   FERRY_PY_TESTS_PYTHON python used to make the venv (default python3; >= 3.9)
#   FERRY_EMULATORS=1     also run the AWS-backend test (with the variables of
#                         `eval "$(scripts/emulators.sh env)"`, as scripts/test.sh sets them)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
[[ "$TARGET" == /* ]] || TARGET="$REPO_ROOT/$TARGET"
DIR="${FERRY_PY_TESTS_DIR:-$TARGET}"
PYTHON="${FERRY_PY_TESTS_PYTHON:-python3}"
VENV="$DIR/python-tests-venv"
MARKER="$VENV/.ferry-python-tests-pins"
PINS=(pytest==8.3.5 mypy==1.15.0)

die() { echo "python-tests.sh: error: $*" >&2; exit 1; }
info() { echo "python-tests.sh: $*" >&2; }

[[ "${1:-}" == -h || "${1:-}" == --help ]] && {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 0
}

# 1. The venv with the test tools, made once.
PY_VERSION="$("$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9), "needs >= 3.9"; print("%d.%d.%d" % sys.version_info[:3])')" \
    || die "FERRY_PY_TESTS_PYTHON=$PYTHON does not run, or is older than 3.9"
WANT="${PINS[*]} python-$PY_VERSION"
mkdir -p "$DIR"
if [[ "$(cat "$MARKER" 2>/dev/null || true)" != "$WANT" ]]; then
    info "making $VENV with $WANT"
    started=$SECONDS
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON (install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" \
        || die "pip could not install ${PINS[*]}"
    echo "$WANT" >"$MARKER"
    info "made the venv in $((SECONDS - started)) s"
fi

# 2. The package under test, as a user installs it.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$REPO_ROOT/python" \
    || die "pip install ./python failed (output above)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$REPO_ROOT/python" \
    || die "pip install ./python could not install its dependencies (output above)"

# 3. The binary.
if [[ -z "${FERRY_BIN:-}" ]]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust, or set FERRY_BIN to a ferry binary"
    (cd "$REPO_ROOT" && cargo build --locked --quiet -p ferry-cli --bin ferry) \
        || die "cargo build of ferry failed (output above)"
    FERRY_BIN="$TARGET/debug/ferry"
fi
[[ -f "$FERRY_BIN" && -x "$FERRY_BIN" ]] || die "FERRY_BIN=$FERRY_BIN is not an executable file"
export FERRY_BIN PYTHONDONTWRITEBYTECODE=1

# 4. Types, then the tests (run from python/ so its pyproject.toml configures both).
(cd "$REPO_ROOT/python" && "$VENV/bin/python" -m mypy && "$VENV/bin/python" -m mypy --python-version 3.9 src/ferry) \
    || die "mypy --strict found errors (above)"
if [[ "${FERRY_EMULATORS:-}" == 1 ]]; then
    info "backends: embedded and aws (FERRY_EMULATORS=1)"
else
    info "backends: embedded only (FERRY_EMULATORS=1 with the emulators' variables adds aws)"
fi
status=0
(cd "$REPO_ROOT/python" && "$VENV/bin/python" -m pytest -p no:cacheprovider -ra "$@") || status=$?
case "$status" in
    0) info "ok" ;;
    5) die "pytest collected no test (exit 5): nothing was checked" ;;
    *) die "python tests failed (pytest exit $status)" ;;
esac
