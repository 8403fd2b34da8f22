#!/bin/sh
# Issue 17's table on sqz-llama-26m: every pruner at 50 / 60 / 70 % sparsity (density 0.5 /
# 0.4 / 0.3) and 2:4, SparseGPT + GPTQ
# (when sqz prune takes a quantized --type), plain SVD / LORD / ASVD at 80 % and 60 % of the
# parameters, 1 and 2 dropped blocks, and the dense f16 and Q8_0 files: one JSON line per model
# with its file bytes and, on sotu / mail / wikitext-2, KL to the dense model and perplexity
# (sqz ppl --ctx 1024 --max-tokens 20481 --kld-base). Speed is measured apart (bench_model on an
# idle machine: docs/sparse.md). Calibration: calib-1m.txt (32768 tokens, the default).
# Usage: sh bench/prune_table.sh OUTDIR [THREADS]   (about 40 minutes at 1 thread)
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
BASE=$SHARED/models/sqz-llama-26m
CAL=$SHARED/data/calib/calib-1m.txt
OUT=${1:?usage: prune_table.sh OUTDIR [THREADS]}
T=${2:-1}
mkdir -p "$OUT" || exit 1
texts="sotu:$SHARED/data/domains/sotu.test.txt mail:$SHARED/data/domains/mail.test.txt wikitext2:$SHARED/data/wikitext-2/wiki.test.raw"
row() { # name file (a row already measured is printed again from OUT/name.row)
    [ -s "$OUT/$1.row" ] && { cat "$OUT/$1.row"; return; }
    line="{\"model\": \"$1\", \"bytes\": $(stat -c %s "$2")"
    for tf in $texts; do
        n=${tf%%:*}; f=${tf#*:}
        j=$("$SQZ" ppl "$2" -f "$f" --ctx 1024 --max-tokens 20481 --kld-base "$BASE" --kld-cache "$OUT/base-$n.kld" \
             --json --no-progress -t "$T" 2>/dev/null) || { echo "prune_table: ppl $1 $n failed" >&2; return; }
        line="$line, \"$n\": $(echo "$j" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"kl": d.get("kld"), "ppl": d["ppl"]}))')"
    done
    echo "$line}" | tee "$OUT/$1.row"
}
run() { # name command... (skipped when its output exists)
    name=$1; shift
    [ -s "$OUT/$name.done" ] || { "$@" --no-progress -t "$T" > "$OUT/$name.log" 2>&1 && echo ok > "$OUT/$name.done"; } ||
        { echo "prune_table: $name failed: $(tail -1 "$OUT/$name.log")" >&2; return 1; }
}
[ -s "$OUT/q8_0.gguf" ] || "$SQZ" convert "$BASE" -o "$OUT/q8_0.gguf" --type q8_0 --pure > /dev/null 2>&1
row q8_0 "$OUT/q8_0.gguf"
for m in magnitude wanda sparsegpt; do
    for lv in 50:0.5 60:0.4 70:0.3 2:4; do
        case $lv in 2:4) arg="--nm 2:4"; n=$m-2-4 ;; *) arg="--density ${lv#*:}"; n=$m-${lv%%:*} ;; esac
        run "$n" "$SQZ" prune "$BASE" -o "$OUT/$n.sqzf" --method $m $arg --calib "$CAL" --type sp8 && row "$n-sp8" "$OUT/$n.sqzf"
    done
done
if "$SQZ" prune --help 2>&1 | grep -q "gptq"; then
    for lv in 0.5 2:4; do
        case $lv in *:*) arg="--nm $lv" ;; *) arg="--density $lv" ;; esac
        for ty in q4_k q8_0; do
            n=sparsegpt-gptq-$(echo "$lv" | tr : -)-$ty
            run "$n" "$SQZ" prune "$BASE" -o "$OUT/$n.gguf" --method sparsegpt $arg --calib "$CAL" --type $ty && row "$n" "$OUT/$n.gguf"
        done
    done
fi
for m in svd lord asvd; do
    for p in 0.8 0.6; do
        n=$m-$p
        run "$n" "$SQZ" lowrank "$BASE" -o "$OUT/$n.sqzf" --method $m --params $p --calib "$CAL" && row "$n" "$OUT/$n.sqzf"
    done
done
for b in 1 2; do
    n=drop-$b
    run "$n" "$SQZ" drop "$BASE" -o "$OUT/$n.gguf" --blocks $b --calib "$CAL" && row "$n" "$OUT/$n.gguf"
done
