#!/usr/bin/env bash
# Builds and runs the Ferry agent image (the repo's Dockerfile): one image for both
# `ferry agent start -q QUEUE` (a long-running ECS service) and `ferry agent execute RUN_ID`
# (one ECS task per run). See docs/agent-image.md.
#
# Uses docker when a docker daemon answers (`docker info`), else podman with runc: every podman
# call gets `--runtime runc` and CONTAINERS_CONF=$DIR/containers.conf (crun cannot set rlimits
# on these machines and their cgroups are hybrid; see `install`).
#
# Usage: scripts/agent-image.sh <command>      (works from any cwd)
#   install      install podman, runc and debootstrap with apt-get when missing (root or sudo),
#                and write $DIR/containers.conf; a fast no-op when done already
#   base         choose the image the Dockerfile builds FROM and make it available locally:
#                  python:3.12-slim-bookworm when it is present or a registry answers, else
#                  localhost/ferry-base:bookworm built here from Debian packages (debootstrap
#                  minbase + python3, python3-venv, ca-certificates, from the mirror apt uses);
#                skipped when that image exists. Records the choice in $DIR/base.
#   build [TAG]  build the image as TAG (default ferry-agent:dev) from a staged context (the
#                Dockerfile + the `ferry` binary): FERRY_BIN when set, else
#                `cargo build --release -p ferry-cli --bin ferry`. Runs `base` first if needed.
#                Only the binary's layer is rebuilt when only the binary changed (seconds).
#   run ARGS...  run the image with host networking and ARGS (after the `ferry` entrypoint),
#                passing through the AWS_* and FERRY_* variables that are set (except the
#                host-only ones listed in HOST_ONLY_VARS below)
#   size [--bytes]  print the size of the image and of its base (--bytes: the image's, in bytes)
#   conf         print the path of the containers.conf (for `CONTAINERS_CONF=... podman ...`)
#   clean        remove the image, the locally built base and $DIR
#
# Environment:
#   FERRY_IMAGE_DIR     state directory (containers.conf, base choice, build context)
#                       (default: <repo>/.agent-image)
#   FERRY_IMAGE_TAG     image tag for build/run/size        (default: ferry-agent:dev)
#   FERRY_IMAGE_BASE    use this base image, skip the choice (e.g. an ECR mirror of python:3.12-slim)
#   FERRY_BIN           the ferry binary to put in the image (default: a release build)
#   FERRY_IMAGE_STRIP   0 keeps the binary's debug info   (default: stripped with strip --strip-debug)
#   FERRY_DEBIAN_MIRROR Debian mirror for debootstrap       (default: the one apt uses)
#
# Times on a 2-core Debian 12 machine: install ~1 min, base ~1 min, build with a new binary a few
# seconds, run ~1 s.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FERRY_IMAGE_DIR:-$REPO_ROOT/.agent-image}"
CONF="$DIR/containers.conf"
TAG="${FERRY_IMAGE_TAG:-ferry-agent:dev}"
PROD_BASE="docker.io/library/python:3.12-slim-bookworm"
LOCAL_BASE="localhost/ferry-base:bookworm"
SUITE="bookworm"
BASE_PACKAGES="python3,python3-venv,ca-certificates"
# Variables that only make sense on the host; `run` does not pass them into the container.
HOST_ONLY_VARS=" FERRY_BIN FERRY_HOME FERRY_PYTHON FERRY_EMULATORS_DIR FERRY_IMAGE_DIR FERRY_IMAGE_TAG FERRY_IMAGE_BASE FERRY_IMAGE_STRIP FERRY_DEBIAN_MIRROR "

die() { echo "agent-image.sh: error: $*" >&2; exit 1; }
info() { echo "agent-image.sh: $*" >&2; }

# The container engine: docker when its daemon answers, else podman.
ENGINE=""
engine() {
    if [[ -z "$ENGINE" ]]; then
        if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
            ENGINE=docker
        else
            ENGINE=podman
        fi
    fi
    echo "$ENGINE"
}

# Runs the container engine with this script's configuration.
ctr() {
    if [[ "$(engine)" == docker ]]; then
        docker "$@"
    else
        command -v podman >/dev/null 2>&1 || die "podman is not installed; run '$0 install'"
        [[ -f "$CONF" ]] || die "$CONF is missing; run '$0 install'"
        CONTAINERS_CONF="$CONF" podman --runtime runc "$@"
    fi
}

image_exists() { ctr image inspect "$1" >/dev/null 2>&1; }

# Serialize install/base/build between concurrent invocations.
lock() {
    mkdir -p "$DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$DIR/.lock"
        flock -w 600 9 || die "another agent-image.sh has held $DIR/.lock for 10 minutes"
    fi
}

# ---------------------------------------------------------------------------------------------
# install

# debootstrap lives in /usr/sbin, which a non-root PATH may lack.
have_tool() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "installing packages needs root: run '$0 install' as root (or install sudo)"
    fi
}

write_conf() {
    # crun (podman's default runtime) fails here: it cannot set rlimits, and the cgroup setup
    # is hybrid. runc with the cgroupfs manager and no default ulimits works.
    local want
    want='# Written by scripts/agent-image.sh install; used as CONTAINERS_CONF for every podman call.
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
'
    mkdir -p "$DIR"
    if [[ ! -f "$CONF" || "$(cat "$CONF")" != "$(printf '%s' "$want")" ]]; then
        printf '%s' "$want" >"$CONF"
        info "wrote $CONF"
    fi
}

cmd_install() {
    lock
    if [[ "$(engine)" == docker ]]; then
        # debootstrap is only needed when no registry is reachable (see `base`).
        have_tool debootstrap || info "docker daemon found; not installing podman (debootstrap is missing: 'base' needs a reachable registry)"
        return 0
    fi
    local missing=() tool
    for tool in podman runc debootstrap; do
        have_tool "$tool" || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null 2>&1 \
            || die "${missing[*]} missing and apt-get not found: install them with your package manager"
        info "installing ${missing[*]} with apt-get"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
            || die "apt-get update failed (output above); check the apt sources and the network"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >&2 \
            || die "apt-get install ${missing[*]} failed (output above)"
        for tool in "${missing[@]}"; do
            have_tool "$tool" || die "apt-get installed $tool but it is not on PATH"
        done
    fi
    write_conf
}

# ---------------------------------------------------------------------------------------------
# base

# Prints the first URI of an apt source (deb822 *.sources or one-line sources.list) that serves
# the Debian suite $SUITE.
apt_mirror() {
    local f
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        awk -v suite="$SUITE" '
            function flush() {
                if (!disabled && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = ""; suites = ""; uris = ""; disabled = 0
            }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "types:"   { $1 = ""; types = $0 }
            tolower($1) == "suites:"  { $1 = ""; suites = $0 }
            tolower($1) == "uris:"    { $1 = ""; uris = $0 }
            tolower($1) == "enabled:" && tolower($2) == "no" { disabled = 1 }
            END { if (!found) flush() }
        ' "$f" | head -n1
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f"
    done
    shopt -u nullglob
}

registry_reachable() {
    local code
    code="$(curl -s -o /dev/null -m 5 -w '%{http_code}' https://registry-1.docker.io/v2/ 2>/dev/null || true)"
    [[ "$code" == 200 || "$code" == 401 ]]
}

build_local_base() {
    have_tool debootstrap || die "debootstrap is not installed; run '$0 install'"
    local mirror="${FERRY_DEBIAN_MIRROR:-}"
    if [[ -z "$mirror" ]]; then
        mirror="$(apt_mirror)"
        mirror="${mirror%%$'\n'*}"
    fi
    [[ -n "$mirror" ]] \
        || die "no apt source for Debian $SUITE in /etc/apt/sources.list(.d); set FERRY_DEBIAN_MIRROR to a Debian mirror URL"
    local rootfs="$DIR/rootfs"
    rm -rf "$rootfs"
    info "building $LOCAL_BASE from Debian packages: debootstrap --variant=minbase --include=$BASE_PACKAGES $SUITE ($mirror)"
    local debootstrap_bin
    debootstrap_bin="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
    as_root "$debootstrap_bin" --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
        >"$DIR/debootstrap.log" 2>&1 || {
        tail -n 30 "$DIR/debootstrap.log" >&2
        die "debootstrap failed (log: $DIR/debootstrap.log, end above); check the mirror ($mirror) or set FERRY_DEBIAN_MIRROR"
    }
    # Slim it the way Debian's slim images are: no package caches, lists, docs or man pages.
    as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
    as_root tar -C "$rootfs" --numeric-owner -c . | ctr import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$LOCAL_BASE" >/dev/null || die "importing $rootfs as $LOCAL_BASE failed"
    as_root rm -rf "$rootfs"
}

cmd_base() {
    lock
    local base
    if [[ -n "${FERRY_IMAGE_BASE:-}" ]]; then
        base="$FERRY_IMAGE_BASE"
        image_exists "$base" || ctr pull "$base" >&2 || die "cannot pull FERRY_IMAGE_BASE=$base"
    elif image_exists "$PROD_BASE"; then
        base="$PROD_BASE"
    elif image_exists "$LOCAL_BASE"; then
        base="$LOCAL_BASE"
    elif registry_reachable && ctr pull "$PROD_BASE" >&2; then
        base="$PROD_BASE"
    else
        info "no container registry reachable: building the base from Debian packages instead of $PROD_BASE"
        build_local_base
        base="$LOCAL_BASE"
    fi
    echo "$base" >"$DIR/base"
    info "base image: $base"
}

# ---------------------------------------------------------------------------------------------
# build

ferry_binary() {
    if [[ -n "${FERRY_BIN:-}" ]]; then
        [[ -f "$FERRY_BIN" && -x "$FERRY_BIN" ]] || die "FERRY_BIN=$FERRY_BIN is not an executable file"
        echo "$FERRY_BIN"
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust, or set FERRY_BIN to a ferry binary"
    info "building the ferry binary (cargo build --release -p ferry-cli --bin ferry)"
    (cd "$REPO_ROOT" && cargo build --locked --release -p ferry-cli --bin ferry >&2) \
        || die "cargo build of ferry failed (output above)"
    local target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
    [[ "$target" == /* ]] || target="$REPO_ROOT/$target"
    [[ -x "$target/release/ferry" ]] || die "cargo built ferry but $target/release/ferry is missing"
    echo "$target/release/ferry"
}

cmd_build() {
    local tag="${1:-$TAG}" bin base old_id new_id ctx
    bin="$(ferry_binary)"
    if [[ ! -f "$DIR/base" ]] || ! image_exists "$(cat "$DIR/base")"; then
        cmd_base
    fi
    lock
    base="$(cat "$DIR/base")"
    ctx="$DIR/context"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp "$REPO_ROOT/Dockerfile" "$ctx/Dockerfile"
    mkdir -p "$ctx/python/src"
    cp -r "$REPO_ROOT/python/src/ferry" "$ctx/python/src/ferry"
    find "$ctx/python" -name __pycache__ -prune -exec rm -rf {} +
    # A debug build is mostly debug info (~370 MB of ~440 MB): drop it unless asked to keep it.
    if [[ "${FERRY_IMAGE_STRIP:-1}" != 0 ]] && command -v strip >/dev/null 2>&1; then
        strip --strip-debug -o "$ctx/ferry" "$bin" || die "strip --strip-debug $bin failed; set FERRY_IMAGE_STRIP=0 to copy it as is"
    else
        cp "$bin" "$ctx/ferry"
    fi
    chmod 0755 "$ctx/ferry"
    old_id="$(ctr image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
    local args=(build --build-arg "BASE=$base" -t "$tag" -f "$ctx/Dockerfile")
    [[ "$(engine)" == podman ]] && args+=(--layers --isolation chroot --pull=never)
    info "building $tag FROM $base with $bin"
    ctr "${args[@]}" "$ctx" >"$DIR/build.log" 2>&1 || {
        tail -n 30 "$DIR/build.log" >&2
        die "building $tag failed (log: $DIR/build.log, end above)"
    }
    rm -rf "$ctx"
    # Flows written with the Python package import it in the image.
    ctr run --rm --entrypoint python3 "$tag" -c 'import ferry, ferry.runtime' \
        || die "the image $tag cannot import the ferry Python package (Dockerfile's COPY python/src/ferry)"
    new_id="$(ctr image inspect --format '{{.Id}}' "$tag")"
    # The previous build of this tag is now untagged: remove it (by id) so disk does not fill up.
    if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
        ctr rmi "$old_id" >/dev/null 2>&1 \
            || info "kept the previous image $old_id (a container still uses it)"
    fi
    info "built $tag ($new_id)"
}

# ---------------------------------------------------------------------------------------------
# run, size, clean

cmd_run() {
    image_exists "$TAG" || die "image $TAG not found; run '$0 build'"
    local envs=() name
    while IFS= read -r name; do
        [[ "$HOST_ONLY_VARS" == *" $name "* ]] && continue
        envs+=(-e "$name")
    done < <(compgen -e | grep -E '^(AWS|FERRY)_' || true)
    ctr run --rm --network host "${envs[@]+"${envs[@]}"}" "$TAG" "$@"
}

human() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }

cmd_size() {
    image_exists "$TAG" || die "image $TAG not found; run '$0 build'"
    local size base bsize
    size="$(ctr image inspect --format '{{.Size}}' "$TAG")"
    if [[ "${1:-}" == --bytes ]]; then
        echo "$size"
        return 0
    fi
    echo "$TAG $(human "$size") ($size bytes)"
    if [[ -f "$DIR/base" ]] && image_exists "$(cat "$DIR/base")"; then
        base="$(cat "$DIR/base")"
        bsize="$(ctr image inspect --format '{{.Size}}' "$base")"
        echo "  base $base $(human "$bsize") ($bsize bytes)"
    fi
}

cmd_clean() {
    lock
    local img
    for img in "$TAG" "$LOCAL_BASE"; do
        if image_exists "$img"; then
            ctr rmi "$img" >/dev/null || die "cannot remove $img (a container may still use it: '$(engine) ps -a')"
            info "removed $img"
        fi
    done
    rm -rf "$DIR"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

case "${1:-}" in
    install) cmd_install ;;
    base) cmd_base ;;
    build) shift; cmd_build "$@" ;;
    run) shift; cmd_run "$@" ;;
    size) shift; cmd_size "$@" ;;
    conf) echo "$CONF" ;;
    clean) cmd_clean ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
esac
