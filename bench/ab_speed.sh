#!/bin/sh
# ab_speed.sh - is a change slower? Two builds of bench_model (the old one and the new one) run
# back to back on the same GGUF files, alternating which goes first, PAIRS times per type; prints
# each pair on stderr and one JSON object on stdout with the median new/old ratio of decode
# (from an empty context and after the prompt) and prefill per type. A ratio >= 0.97 is "speed
# unchanged" within this VM's noise (bandwidth and clocks move by 20 % between minutes, which
# is why the two halves of a pair run back to back and the median is taken).
#
#   sh bench/ab_speed.sh OLD_BENCH_MODEL NEW_BENCH_MODEL [PAIRS] [TYPES] [MODEL]
#       (defaults: 8 pairs, "f16 q4_k", sqz-llama-26m)
#
# e.g. build the old tree's bench in a git worktree:
#   git worktree add /tmp/old REV && make -C /tmp/old -j2 bench
#   sh bench/ab_speed.sh /tmp/old/build/bench/bench_model build/bench/bench_model
# Each run: --threads-list 2 --reps 3 (best of 3), --ppl-tokens 1025, --bw-mib 128.
set -e
OLD=$1
NEW=$2
PAIRS=${3:-8}
TYPES=${4:-f16 q4_k}
SHARED=${SQZ_SHARED:-../shared}
MODEL=${5:-$SHARED/models/sqz-llama-26m}
BUILD=${BUILD:-build}
[ -x "$OLD" ] && [ -x "$NEW" ] || { echo "usage: ab_speed.sh OLD_BENCH_MODEL NEW_BENCH_MODEL [PAIRS] [TYPES] [MODEL]" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# decode_empty_tps, decode_tps, prefill_tps and other_processes_cores of one run
fields() {
    "$1" "$2" --threads-list 2 --reps 3 --ppl-tokens 1025 --bw-mib 128 2>/dev/null | awk '
        function num(key,   s) { if (!match($0, "\"" key "\":[-0-9.e+]+")) return "nan"
                                 s = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", s); return s }
        { print num("decode_empty_tps"), num("decode_tps"), num("prefill_tps"), num("other_processes_cores") }'
}

printf '{"pairs":%d,"threads":2,"types":{' "$PAIRS"
first=1
for type in $TYPES; do
    "$BUILD/sqz" convert "$MODEL" -o "$TMP/$type.gguf" --type "$type" >/dev/null 2>&1
    i=0
    while [ "$i" -lt "$PAIRS" ]; do
        i=$((i + 1))
        if [ $((i % 2)) -eq 1 ]; then o=$(fields "$OLD" "$TMP/$type.gguf"); n=$(fields "$NEW" "$TMP/$type.gguf")
        else n=$(fields "$NEW" "$TMP/$type.gguf"); o=$(fields "$OLD" "$TMP/$type.gguf"); fi
        echo "$o $n"
        echo "$type pair $i: old $o | new $n (decode0 decode prefill others)" >&2
    done > "$TMP/$type.pairs"
    [ $first -eq 1 ] || printf ','
    first=0
    awk -v type="$type" '
        function median(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        { n++; r0[n] = $5 / $1; r1[n] = $6 / $2; r2[n] = $7 / $3
          o = $4 > $8 ? $4 : $8; if (o > worst) worst = o
          list = list (n > 1 ? "," : "") sprintf("{\"old\":[%s,%s,%s],\"new\":[%s,%s,%s],\"others\":%s}", $1, $2, $3, $5, $6, $7, o) }
        END {
            printf "\"%s\":{\"median_ratio_new_over_old\":{\"decode_empty\":%.3f,\"decode\":%.3f,\"prefill\":%.3f},", type, median(r0, n), median(r1, n), median(r2, n)
            printf "\"max_other_processes_cores\":%s,\"runs\":[%s]}", worst + 0, list
        }' "$TMP/$type.pairs"
done
printf '},"how":"bench_model --threads-list 2 --reps 3 --ppl-tokens 1025 --bw-mib 128, old and new back to back (order alternating), [decode_empty, decode, prefill] tokens/s per run"}\n'
