#!/usr/bin/env bash
# Build and install the `mesh` binary, then register it (`mesh install`): service unit, Claude
# Code hooks, MCP server and status line. Arguments go to `mesh install` (e.g. --no-service,
# --dry-run). Needs a Rust toolchain (see README.md).
#
# On Linux with glibc the binary is linked statically (`+crt-static`): a hook runs on every
# tool call of every Claude Code session, and a statically linked `mesh` starts as fast as an
# empty program, while the dynamic one spends ~0.3 ms in the loader (BENCHMARKS.md, rows 2c–2i).
# Static linking needs `--target` (rustc cannot build proc-macros with +crt-static), and glibc's
# static archive (libc6-dev). Where that fails the ordinary dynamic build is installed instead.
set -euo pipefail
cd "$(dirname "$0")"

root=${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}
static_target=
# (Output captured first: `ldd --version | grep -q` can fail under pipefail when grep exits
# before ldd has written everything.)
libc=$(ldd --version 2>&1 || true)
if [ "$(uname -s)" = Linux ] && [[ ${libc,,} == *glibc* || ${libc,,} == *"gnu libc"* ]]; then
    case "$(uname -m)" in
        x86_64) static_target=x86_64-unknown-linux-gnu ;;
        aarch64) static_target=aarch64-unknown-linux-gnu ;;
    esac
fi

installed=
if [ -n "$static_target" ]; then
    echo "--- building mesh (statically linked, $static_target) into $root/bin (a few minutes the first time)"
    if RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo install --locked --force --path mesh --target "$static_target"; then
        installed=1
    else
        echo "--- the static build failed (is libc6-dev installed?); building the dynamic binary instead" >&2
    fi
fi
if [ -z "$installed" ]; then
    echo "--- building mesh into $root/bin (a few minutes the first time)"
    cargo install --locked --force --path mesh
fi

mesh="$root/bin/mesh"
echo "--- $mesh install $*"
exec "$mesh" install "$@"
