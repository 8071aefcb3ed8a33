#!/usr/bin/env bash
# Run both fuzz targets for a given time each (default 60 s): the frame decoder and the daemon's
# request handling (fuzz/fuzz_targets/). `bash fuzz/run.sh 20` is CI's short run; run it longer by
# hand (`bash fuzz/run.sh 3600`). New inputs go to a scratch corpus; the committed seeds in
# fuzz/corpus/ are only read. A crash stops the run and leaves its input in fuzz/artifacts/.
#
# cargo-fuzz needs unstable compiler flags (sanitizer, coverage); this machine has only the
# stable toolchain, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "--- installing cargo-fuzz"
    cargo install --locked cargo-fuzz@0.13.2
fi
export RUSTC_BOOTSTRAP=1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in frame_decoder request_handling; do
    echo "--- fuzzing $target for ${secs}s"
    mkdir -p "$scratch/$target"
    set +e
    cargo fuzz run --release "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 2>&1 |
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|thread|panicked|Test unit written)|ERROR'
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "fuzzing $target found a failure (exit $status); its input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
