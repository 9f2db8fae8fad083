#!/usr/bin/env bash
# Prints the path of an OpenResty nginx (lua-nginx-module built in) for
# `make test-openresty`, the benchmarks and the demo; progress and errors
# go to stderr, so `bin=$(bench/openresty.sh)` gets the path alone.
#
# The first of:
#   1. $OPENRESTY, a binary (`make test-openresty NGINX=...` sets it too);
#   2. `openresty` on the PATH (OpenResty's packages install one);
#   3. a build of the sources in $OPENRESTY_SRC (default: shared/openresty
#      beside the checkout, or beside the main worktree of a git worktree),
#      made once by their build.sh into $OPENRESTY_CACHE (default
#      ${XDG_CACHE_HOME:-~/.cache}/lua-resty-warden, or
#      /var/cache/lua-resty-warden for root, whose home the workers of a
#      test nginx cannot read) and reused afterwards.
#
#   bench/openresty.sh             the path; builds the sources if need be
#   bench/openresty.sh --no-build  the path, or exit status 1 (printing
#                                  nothing) when only a build would give
#                                  one or there is nothing to build
set -euo pipefail
umask 022
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=1
[ "${1:-}" = --no-build ] && build=0

say() { echo "openresty.sh: $*" >&2; }

# A binary is fit when lua-nginx-module is built in (the test libraries
# and the scripts add no load_module line then).
lua_built_in() {
    "$1" -V 2>&1 | grep -Eq -- 'lua-nginx-module|--add-module=[^ ]*lua'
}

found() {
    local bin
    bin=$(command -v "$1" 2>/dev/null) || {
        say "$2$1: no such program"; exit 1; }
    if ! lua_built_in "$bin"; then
        say "$2$1 ($bin) has no lua-nginx-module built in: not an OpenResty"
        exit 1
    fi
    echo "$bin"
    exit 0
}

[ -n "${OPENRESTY:-}" ] && found "$OPENRESTY" "OPENRESTY="
command -v openresty >/dev/null 2>&1 && found openresty "PATH: "

# The sources: $OPENRESTY_SRC, else shared/openresty next to this checkout
# (/work/main -> /work/shared) or next to the main worktree when this is
# another worktree of the same repository.
src=${OPENRESTY_SRC:-}
if [ -z "$src" ]; then
    tried=()
    common=$(git -C "$root" rev-parse --path-format=absolute \
             --git-common-dir 2>/dev/null || true)
    for d in "$root/../shared/openresty" \
             ${common:+"$(dirname "$common")/../shared/openresty"}; do
        tried+=("$d")
        if [ -f "$d/build.sh" ]; then src=$d; break; fi
    done
    if [ -z "$src" ]; then
        if [ "$build" = 1 ]; then
            cat >&2 <<EOF
openresty.sh: no OpenResty to run: OPENRESTY is not set, there is no
\`openresty\` on the PATH, and no sources to build one (no build.sh in
${tried[*]}).
Set one of:
  OPENRESTY=/usr/local/openresty/bin/openresty  an OpenResty binary
                                   (make test-openresty also takes NGINX=)
  OPENRESTY_SRC=/path/to/openresty-sources      a directory with build.sh and
                                   the sources it builds (shared/openresty)
EOF
        fi
        exit 1
    fi
fi
[ -f "$src/build.sh" ] || { say "OPENRESTY_SRC=$src has no build.sh"; exit 1; }
src=$(cd "$src" && pwd)

if [ -z "${OPENRESTY_CACHE:-}" ]; then
    if [ "$(id -u)" = 0 ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
        OPENRESTY_CACHE=/var/cache/lua-resty-warden
    else
        OPENRESTY_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/lua-resty-warden
    fi
fi

# One build per content of the sources: the nginx version in the name, a
# hash of build.sh and the tarballs after it.
version=$(cd "$src" && ls nginx-*.tar.gz 2>/dev/null | head -n 1 |
          sed 's/^nginx-//; s/\.tar\.gz$//')
hash=$(cd "$src" && cat build.sh *.tar.gz | sha256sum | cut -c 1-8)
prefix=$OPENRESTY_CACHE/openresty-${version:-unknown}-$hash
bin=$prefix/nginx/sbin/nginx

if [ -f "$prefix/.built" ] && [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
[ "$build" = 1 ] || exit 1

mkdir -p "$OPENRESTY_CACHE"
# Two checkouts building at once wait for each other; a build that was
# interrupted (no .built) is started again from scratch.
exec 9>"$OPENRESTY_CACHE/.lock"
flock 9
if ! [ -f "$prefix/.built" ]; then
    rm -rf "$prefix"
    say "building $src into $prefix (a few minutes, once)"
    # build.sh's last step prints the version through `nginx -V | head`,
    # which a pipefail shell can report as a failure (SIGPIPE) after a
    # good build: a binary that is there and has Lua built in counts.
    if ! "$src/build.sh" "$prefix" >&2 && ! [ -x "$bin" ]; then
        say "the build failed (as root, build.sh installs its build" \
            "dependencies; see $src/README.md)"
        exit 1
    fi
    lua_built_in "$bin" || { say "$bin has no Lua module built in"; exit 1; }
    touch "$prefix/.built"
fi
echo "$bin"
