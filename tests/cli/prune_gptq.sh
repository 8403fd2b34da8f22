#!/bin/sh
# CLI: `sqz prune --method sparsegpt --type q4_0` prunes and quantizes in one pass (issue 17,
# docs/prune-gptq.md) on ../shared's sqz-llama-14m: every block matrix and the head are Q4_0,
# --json reports half the block weights removed, and the result's perplexity is finite and below
# that of magnitude pruning then plain rounding to Q4_0 at the same level (both at 50 % and 2:4).
# A refusal on the embedded model. Skipped without ../shared.
SQZ=${SQZ:-build/sqz}
MODEL=../shared/models/sqz-llama-14m
CAL=../shared/data/calib/calib-1m.txt
TEXT=../shared/data/domains/sotu.test.txt
if [ ! -x "$SQZ" ]; then
    echo "not ok - no CLI at $SQZ"
    exit 1
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
export OMP_WAIT_POLICY=passive

# a refusal: one line, status 1, no file (the embedded model: nothing of ../shared needed)
"$SQZ" prune assets/stories260K/stories260K.bin -o "$tmp/bad.gguf" --method sparsegpt --density 1.5 --type q4_0 \
    --calib assets/tinystories-valid-slice.txt --no-progress > "$tmp/stdout" 2> "$tmp/stderr"
st=$?
if [ "$st" -eq 2 ] && [ "$(wc -l < "$tmp/stderr")" -eq 1 ] && grep -q "invalid value" "$tmp/stderr" && [ ! -e "$tmp/bad.gguf" ]; then
    echo "ok - prune --density 1.5 --type q4_0 refused: $(cat "$tmp/stderr")"
else
    echo "not ok - prune --density 1.5 --type q4_0: status $st: $(cat "$tmp/stderr")"
    fails=$((fails + 1))
fi

if [ ! -d "$MODEL" ] || [ ! -f "$CAL" ] || [ ! -f "$TEXT" ]; then
    echo "skip - $MODEL or its texts are missing"
    [ "$fails" -eq 0 ]
    exit
fi

ppl() { # FILE -> perplexity on sotu's first 4097 tokens (windows of 512)
    "$SQZ" ppl "$1" -f "$TEXT" --ctx 512 --max-tokens 4097 --json --no-progress -t 1 2> /dev/null |
        sed -n 's/.*"ppl":\([0-9.eE+-]*\).*/\1/p'
}

for level in "--density 0.5" "--nm 2:4"; do
    if ! "$SQZ" prune "$MODEL" -o "$tmp/joint.gguf" --method sparsegpt $level --type q4_0 --calib "$CAL" \
        --calib-tokens 4096 --json --no-progress -t 1 > "$tmp/j" 2> "$tmp/err"; then
        echo "not ok - sparsegpt $level --type q4_0: $(cat "$tmp/err")"
        fails=$((fails + 1))
        continue
    fi
    "$SQZ" info "$tmp/joint.gguf" > "$tmp/info" 2>&1
    n_q40=$(grep -c '^  \(blk\.[0-9]*\.\(attn_[qkv]\|attn_output\|ffn_gate\|ffn_up\|ffn_down\)\|token_embd\)\.weight .* q4_0 ' "$tmp/info")
    n_mat=$(grep -c '^  \(blk\.[0-9]*\.\(attn_[qkv]\|attn_output\|ffn_gate\|ffn_up\|ffn_down\)\|token_embd\)\.weight ' "$tmp/info")
    if [ "$n_mat" -eq 57 ] && [ "$n_q40" -eq 57 ] && grep -q '"type":"q4_0"' "$tmp/j" && grep -q '"pruned_frac":0.5[,}]' "$tmp/j"; then
        echo "ok - sparsegpt $level --type q4_0: all $n_mat matrices Q4_0 (the head by GPTQ), half the block weights removed"
    else
        echo "not ok - sparsegpt $level --type q4_0: $n_q40 of $n_mat matrices Q4_0; $(head -c 300 "$tmp/j")"
        fails=$((fails + 1))
    fi
    "$SQZ" prune "$MODEL" -o "$tmp/mag.gguf" --method magnitude $level --type q4_0 --no-progress -t 1 > /dev/null 2>&1
    pj=$(ppl "$tmp/joint.gguf")
    pm=$(ppl "$tmp/mag.gguf")
    if awk -v a="$pj" -v b="$pm" 'BEGIN { exit !(a + 0 == a && a > 1 && a < 1e4 && b + 0 > 0 && a < b) }'; then
        echo "ok - sparsegpt $level, q4_0 in one pass: ppl $pj, below magnitude then rounding's $pm"
    else
        echo "not ok - sparsegpt $level, q4_0 in one pass: ppl '$pj', magnitude then rounding '$pm'"
        fails=$((fails + 1))
    fi
done
[ "$fails" -eq 0 ]
