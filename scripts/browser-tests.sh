#!/usr/bin/env bash
# Runs the dashboard's browser tests (tests/browser/) in a real headless Chromium:
#   1. installs Debian's `chromium` and a font with apt-get when one of them is missing
#      (root, or sudo);
#   2. installs the pinned Playwright for Python and pytest (tests/browser/requirements.txt) into
#      a venv, reused while its marker file lists the same pins. Playwright's own browser
#      download (`playwright install`) is never run: the tests launch /usr/bin/chromium;
#   3. runs pytest on tests/browser against the real `ferry` binary: each test starts
#      `ferry server start --port 0` in a fresh FERRY_HOME (and agents, and the CLI), on the
#      embedded backend and, when FERRY_EMULATORS=1 (scripts/test.sh), on the AWS one too;
#   4. leaves a full-page screenshot of every page (and of every failing test's page) in the
#      artifacts directory.
# Exits non-zero on any failure, including a run that collected no test (pytest's exit 5).
#
# Usage: scripts/browser-tests.sh [--update-docs-screenshot] [PYTEST ARGS...]
#                                                       (works from any cwd)
#   --update-docs-screenshot  after a passing run, copy the overview screenshot (1280x800,
#                             embedded backend) to docs/img/dashboard.png (the README's picture)
#   PYTEST ARGS               passed to pytest, e.g. -k cancel, -x, -v
#
# Environment:
#   FERRY_BIN                the ferry binary (default: cargo build -p ferry-cli --bin ferry,
#                            in CARGO_TARGET_DIR when set)
#   FERRY_BROWSER_ARTIFACTS  screenshots (default: <repo>/target/browser-artifacts; emptied first)
#   FERRY_BROWSER_DIR        where the venv lives (default: $FERRY_EMULATORS_DIR, else
#                            <repo>/.emulators), as for scripts/api-fuzz.sh
#   FERRY_CHROMIUM           the Chromium binary (default /usr/bin/chromium; when set, nothing
#                            is installed with apt-get)
#   FERRY_PYTHON             python used to make the venv (default python3; >= 3.9)
#   FERRY_EMULATORS=1        also run every test on the AWS backend (with the variables of
#                            `eval "$(scripts/emulators.sh env)"`); emulators that are down then
#                            fail those tests
#
# Cost on a fresh 2-core Debian 12 machine: see docs/dashboard.md, "Browser tests".
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FERRY_BROWSER_DIR:-${FERRY_EMULATORS_DIR:-$REPO_ROOT/.emulators}}"
PYTHON="${FERRY_PYTHON:-python3}"
CHROMIUM="${FERRY_CHROMIUM:-/usr/bin/chromium}"
ARTIFACTS="${FERRY_BROWSER_ARTIFACTS:-$REPO_ROOT/target/browser-artifacts}"
REQUIREMENTS="$REPO_ROOT/tests/browser/requirements.txt"
VENV="$DIR/browser-venv"
MARKER="$VENV/.ferry-browser-tests-pins"
# Debian's chromium recommends no font package: without one, text renders as boxes. The pages
# use no character DejaVu lacks (an emoji would need fonts-noto-color-emoji, ~11 MB).
APT_PACKAGES=(chromium fonts-dejavu-core)

die() { echo "browser-tests.sh: error: $*" >&2; exit 1; }
info() { echo "browser-tests.sh: $*" >&2; }

UPDATE_DOCS=0
if [[ "${1:-}" == --update-docs-screenshot ]]; then
    UPDATE_DOCS=1
    shift
fi
[[ "${1:-}" == -h || "${1:-}" == --help ]] && {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 0
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "installing ${APT_PACKAGES[*]} needs root: run this script as root (or install sudo), or set FERRY_CHROMIUM"
    fi
}

# 1. Chromium, from Debian's packages (with FERRY_CHROMIUM set: that binary, nothing installed).
installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }
if [[ -n "${FERRY_CHROMIUM:-}" ]]; then
    [[ -x "$CHROMIUM" ]] || die "FERRY_CHROMIUM=$CHROMIUM is not an executable"
else
    missing=()
    if command -v dpkg-query >/dev/null 2>&1; then
        for pkg in "${APT_PACKAGES[@]}"; do
            installed "$pkg" || missing+=("$pkg")
        done
    elif [[ ! -x "$CHROMIUM" ]]; then
        missing=("${APT_PACKAGES[@]}")
    fi
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null 2>&1 \
            || die "${missing[*]} missing and apt-get not found: install Chromium with your package manager, or set FERRY_CHROMIUM"
        info "installing ${missing[*]} with apt-get"
        started=$SECONDS
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
            || die "apt-get update failed (output above); check the apt sources and the network"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >&2 \
            || die "apt-get install ${missing[*]} failed (output above)"
        info "installed ${missing[*]} in $((SECONDS - started)) s"
    fi
    [[ -x "$CHROMIUM" ]] || die "$CHROMIUM is missing after installing ${APT_PACKAGES[*]}"
fi
info "$("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM (version unknown)")"

# 2. Playwright and pytest, pinned.
[[ -f "$REQUIREMENTS" ]] || die "$REQUIREMENTS is missing"
PY_VERSION="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" \
    || die "FERRY_PYTHON=$PYTHON does not run"
WANT="$(grep -Ev '^[[:space:]]*(#|$)' "$REQUIREMENTS" | tr '\n' ' ')python-$PY_VERSION"
mkdir -p "$DIR"
if [[ "$(cat "$MARKER" 2>/dev/null || true)" != "$WANT" ]]; then
    info "installing $WANT into $VENV"
    started=$SECONDS
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON (install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" \
        || die "pip could not install $REQUIREMENTS"
    echo "$WANT" >"$MARKER"
    info "installed the venv in $((SECONDS - started)) s"
fi

# 3. The binary.
if [[ -z "${FERRY_BIN:-}" ]]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust, or set FERRY_BIN to a ferry binary"
    (cd "$REPO_ROOT" && cargo build --locked --quiet -p ferry-cli --bin ferry) \
        || die "cargo build of ferry failed (output above)"
    target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
    [[ "$target" == /* ]] || target="$REPO_ROOT/$target"
    FERRY_BIN="$target/debug/ferry"
fi
[[ -f "$FERRY_BIN" && -x "$FERRY_BIN" ]] || die "FERRY_BIN=$FERRY_BIN is not an executable file"

# 4. The tests.
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
if [[ "${FERRY_EMULATORS:-}" == 1 ]]; then
    info "backends: embedded and aws (FERRY_EMULATORS=1)"
else
    info "backends: embedded only (FERRY_EMULATORS=1 with the emulators' variables adds aws)"
fi
export FERRY_BIN FERRY_CHROMIUM="$CHROMIUM" FERRY_BROWSER_ARTIFACTS="$ARTIFACTS"
export PYTHONDONTWRITEBYTECODE=1
status=0
(cd "$REPO_ROOT" && "$VENV/bin/python" -m pytest -p no:cacheprovider -ra \
    --junitxml="$ARTIFACTS/junit.xml" "$@" tests/browser) || status=$?
case "$status" in
    0) ;;
    5) die "pytest collected no test (exit 5): nothing was checked" ;;
    *) die "browser tests failed (pytest exit $status); screenshots and failure pages in $ARTIFACTS" ;;
esac
shots=("$ARTIFACTS"/*.png)
if [[ -e "${shots[0]}" ]]; then
    info "ok: ${#shots[@]} screenshots in $ARTIFACTS"
elif (($# == 0)); then
    # A whole run screenshots every page: none means the screenshot test did not run.
    die "the tests passed but left no screenshot in $ARTIFACTS"
else
    info "ok (no screenshot: the tests selected by '$*' take none)"
fi

if ((UPDATE_DOCS)); then
    overview="$ARTIFACTS/embedded-overview-1280x800.png"
    [[ -f "$overview" ]] || die "$overview is missing: the overview test did not run"
    mkdir -p "$REPO_ROOT/docs/img"
    cp "$overview" "$REPO_ROOT/docs/img/dashboard.png"
    info "copied $overview to docs/img/dashboard.png"
fi
