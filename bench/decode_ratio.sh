#!/bin/sh
# decode_ratio.sh - how much faster a quantized model decodes than the same model in F16, measured
# as pairs of back-to-back bench_model runs (F16, then TYPE), so that both halves of a pair see
# the same machine: on a shared VM the memory bandwidth and the clocks move by 20-50 % within
# minutes, more than the difference being measured. Prints each pair on stderr and one JSON
# object on stdout with the median over the pairs of each ratio (and every pair's figures).
#
#   sh bench/decode_ratio.sh [PAIRS] [TYPE] [MODEL]     (defaults: 8, q4_k, sqz-llama-26m)
#
# Builds nothing: run `make bench` first. The two GGUF files are written by `sqz convert` into a
# temporary folder, removed at the end. Each run: --threads-list 2 --reps 3 (best of 3).
set -e
PAIRS=${1:-8}
TYPE=${2:-q4_k}
SHARED=${SQZ_SHARED:-../shared}
MODEL=${3:-$SHARED/models/sqz-llama-26m}
BUILD=${BUILD:-build}
[ -x "$BUILD/bench/bench_model" ] || { echo "decode_ratio: run 'make bench' first" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$BUILD/sqz" convert "$MODEL" -o "$TMP/f16.gguf" --type f16 >/dev/null
"$BUILD/sqz" convert "$MODEL" -o "$TMP/q.gguf" --type "$TYPE" >/dev/null

# the first run's decode_empty_tps, decode_tps, prefill_tps and other_processes_cores
fields() {
    "$BUILD/bench/bench_model" "$1" --threads-list 2 --reps 3 2>/dev/null | awk '
        function num(key,   s) { if (!match($0, "\"" key "\":[-0-9.e+]+")) return "nan"
                                 s = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", s); return s }
        { print num("decode_empty_tps"), num("decode_tps"), num("prefill_tps"), num("other_processes_cores") }'
}

i=0
while [ "$i" -lt "$PAIRS" ]; do
    i=$((i + 1))
    f=$(fields "$TMP/f16.gguf")
    q=$(fields "$TMP/q.gguf")
    echo "$f $q"
    echo "pair $i: f16 $f | $TYPE $q (decode0 decode prefill others)" >&2
done | awk -v type="$TYPE" -v pairs="$PAIRS" '
    function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { n++; r0[n] = $5 / $1; r1[n] = $6 / $2; r2[n] = $7 / $3
      o = $4 > $8 ? $4 : $8; if (o > worst) worst = o
      list = list (n > 1 ? "," : "") sprintf("{\"f16\":[%s,%s,%s],\"%s\":[%s,%s,%s],\"others\":%s}", $1, $2, $3, type, $5, $6, $7, o) }
    END {
        printf "{\"type\":\"%s\",\"pairs\":%d,\"threads\":2,", type, n
        printf "\"median_ratio\":{\"decode_empty\":%.3f,\"decode\":%.3f,\"prefill\":%.3f},", median(r0, n), median(r1, n), median(r2, n)
        printf "\"max_other_processes_cores\":%s,\"runs\":[%s],", worst + 0, list
        printf "\"how\":\"each pair: bench_model F16 then %s, --threads-list 2 --reps 3; ratio = %s tokens/s / F16 tokens/s; [decode_empty, decode, prefill] per run\"}\n", type, type
    }'
