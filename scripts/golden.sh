#!/bin/sh
# golden.sh - a fingerprint of sqz's behaviour, to show that a refactoring changed nothing.
#
#   sh scripts/golden.sh [SQZ_BINARY] [OUT_DIR] > golden.txt
#
# Prints one line per check: the SHA-256 of every file written by `sqz convert` (q4_0, q4_k_m,
# q2_k), `sqz quantize` (gptq q4_k_m and gptq --alloc q2_k on sqz-llama-26m; rsq, mixllm and
# decoupleq on sqz-llama-14m) and `sqz kvcalib`, then the perplexity, its standard error and the
# mean NLL (full precision, from --json) of `sqz ppl` with the KV policies whose code is shared
# math (q4, xkv, kvmerger, minicache, h2o, streaming+q4 - the codec's Hadamard -, proj - the
# eigen-solver), and of plain ppl on a GPTQ file with --kld-base (its KL divergence).
# Run it twice on one binary: identical output shows it is deterministic; run it on the old and
# the new binary: identical output shows the change kept behaviour. Threads are fixed (2).
# Calibration is kept short (a few thousand tokens) so the whole script takes minutes.
set -e
SQZ=${1:-build/sqz}
OUT=${2:-$(mktemp -d)}
SHARED=${SQZ_SHARED:-../shared}
M26=$SHARED/models/sqz-llama-26m
M14=$SHARED/models/sqz-llama-14m
CAL=$SHARED/data/calib/calib-1m.txt
SOTU=$SHARED/data/domains/sotu.test.txt
T="--threads 2 --no-progress"
mkdir -p "$OUT"

sha() { printf '%-28s %s\n' "$1" "$(sha256sum "$2" | cut -d' ' -f1)"; }
# the deterministic fields of ppl --json (not its timings)
pplfields() {
    python3 -c 'import json,sys
j=json.loads(sys.stdin.read())
print("%-28s ppl=%r stderr=%r nll=%r tokens=%d%s" % (sys.argv[1], j["ppl"], j["ppl_stderr"], j["nll"],
      j["tokens"], " kld=%r top1=%r" % (j["kld"], j["top1_agree"]) if "kld" in j else ""))' "$1"
}

for t in q4_0 q4_k_m q2_k; do
    $SQZ convert "$M26" -o "$OUT/conv-$t.gguf" --type "$t" $T 2>/dev/null
    sha "convert-26m-$t" "$OUT/conv-$t.gguf"
done

Q="--calib $CAL --calib-tokens 4096 --calib-ctx 512"
$SQZ quantize "$M26" -o "$OUT/gptq-q4_k_m.gguf" --type q4_k_m --method gptq $Q $T 2>/dev/null
sha "quantize-26m-gptq-q4_k_m" "$OUT/gptq-q4_k_m.gguf"
$SQZ quantize "$M26" -o "$OUT/alloc-q2_k.gguf" --type q2_k --method gptq --alloc --alloc-windows 2 $Q $T 2>/dev/null
sha "quantize-26m-alloc-q2_k" "$OUT/alloc-q2_k.gguf"
$SQZ quantize "$M14" -o "$OUT/rsq-q4_k_m.gguf" --type q4_k_m --method rsq --seed 42 $Q $T 2>/dev/null
sha "quantize-14m-rsq-q4_k_m" "$OUT/rsq-q4_k_m.gguf"
$SQZ quantize "$M14" -o "$OUT/mixllm-q4.sqzf" --type q4 --method mixllm $Q $T 2>/dev/null
sha "quantize-14m-mixllm-q4" "$OUT/mixllm-q4.sqzf"
$SQZ quantize "$M14" -o "$OUT/dq-dq2.sqzf" --type dq2 --method decoupleq $Q $T 2>/dev/null
sha "quantize-14m-decoupleq-dq2" "$OUT/dq-dq2.sqzf"
$SQZ quantize "$M14" -o "$OUT/imatrix-q3_k_m.gguf" --type q3_k_m --method imatrix $Q $T 2>/dev/null
sha "quantize-14m-imatrix-q3_k_m" "$OUT/imatrix-q3_k_m.gguf"

$SQZ kvcalib "$M26" -f "$CAL" -o "$OUT/kvproj.bin" --max-tokens 4097 $T 2>/dev/null
sha "kvcalib-26m" "$OUT/kvproj.bin"

P="-f $SOTU --ctx 512 --max-tokens 1537 --kv-prefill 128 --json $T"
for kv in q4 xkv kvmerger minicache h2o:budget=128 streaming:sink=4,window=124+q4 \
          "proj:file=$OUT/kvproj.bin,rank=32"; do
    name=$(printf '%s' "$kv" | sed "s|$OUT/||")
    $SQZ ppl "$M26" $P --kv "$kv" 2>/dev/null | pplfields "ppl-26m-kv-$name"
done
$SQZ ppl "$OUT/gptq-q4_k_m.gguf" -f "$SOTU" --ctx 512 --max-tokens 2049 --kld-base "$M26" --json $T \
    2>/dev/null | pplfields "ppl-26m-gptq-q4_k_m-kld"
$SQZ ppl "$OUT/mixllm-q4.sqzf" -f "$SOTU" --ctx 512 --max-tokens 2049 --json $T 2>/dev/null \
    | pplfields "ppl-14m-mixllm-q4"
$SQZ ppl "$OUT/dq-dq2.sqzf" -f "$SOTU" --ctx 512 --max-tokens 2049 --json $T 2>/dev/null \
    | pplfields "ppl-14m-decoupleq-dq2"
