#!/bin/sh
# The main job, from a fresh Debian 12 machine: install what is missing, build, then compress
# the model embedded in the repository and show what it cost - needs nothing from ../shared.
#   1. the model as it is (Karpathy's stories260K, f32): perplexity on held-out TinyStories
#   2. GPTQ to 4-bit blocks (q4_0), calibrated on a different TinyStories slice
#   3. the quantized model scored on the same windows: perplexity and KL divergence to the original
#   4. plus a KV cache policy (streaming: 4 sink positions and the last 124; 1.8x less cache)
#   5. KV policies compared (kvbench), then one before / after table and report.html (plots)
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -s -j"$(nproc)" build/sqz
SQZ=${SQZ:-build/sqz}
OUT=${OUT:-build/demo}
M=assets/stories260K/stories260K.bin
TEXT=assets/tinystories-valid-slice.txt  # measured on
CALIB=assets/tinystories-calib-slice.txt # calibrated on: another part of the validation split
KV="streaming:sink=4,window=124"
# one thread: the model is tiny (260K weights); more threads only wait on each other
R="--threads ${THREADS:-1} --no-progress --json"
W="--ctx 256"   # windows of 256 tokens, every token after the first scored once
Q=$OUT/stories260K-gptq-q4_0.gguf
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.kld
t0=$(date +%s)

echo "== sqz generate (stories260K, greedy, 48 tokens)" >&2
printf 'Once upon a time'   # generate prints the continuation alone
$SQZ generate $M -p "Once upon a time" -n 48 --temp 0 --threads 1
echo "== 1. before: sqz ppl on $TEXT" >&2
$SQZ ppl $M -f $TEXT $W $R > "$OUT/1-before.json"
echo "== 2. sqz quantize --method gptq --type q4_0, calibrated on $CALIB" >&2
$SQZ quantize $M -o $Q --type q4_0 --method gptq --calib $CALIB --calib-tokens 4096 --calib-ctx 256 \
    $R > "$OUT/2-quantize.json"
echo "== 3. after: perplexity and KL divergence to the original, same windows" >&2
$SQZ ppl $Q -f $TEXT $W --kld-base $M --kld-cache "$OUT/before.kld" $R > "$OUT/3-after.json"
echo "== 4. after + KV cache policy $KV (32-token prefill, then token by token)" >&2
$SQZ ppl $Q -f $TEXT $W --kld-base $M --kld-cache "$OUT/before.kld" --kv $KV --kv-prefill 32 \
    $R > "$OUT/4-after-kv.json"
echo "== 5. KV cache policies on the original model (sqz kvbench)" >&2
$SQZ kvbench $M -f $TEXT $W --max-tokens 4096 --kv-prefill 32 --no-decode \
    --kv f16 --kv q4 --kv "h2o:budget=128" --kv $KV --kv "streaming:sink=4,window=60" \
    $R > "$OUT/5-kvbench.json"
echo "== before / after (sqz report)" >&2
$SQZ report "$OUT"/[1-5]-*.json -o "$OUT/report.html"
echo "(plots and tables: $OUT/report.html; $(( $(date +%s) - t0 )) s)" >&2
