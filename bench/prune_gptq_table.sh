#!/bin/sh
# bench/prune_gptq_table.sh OUT_DIR: docs/prune-gptq.md's table on sqz-llama-26m - SparseGPT at
# 50 % and 2:4, each for q4_k and q8_0: (a) pruned and quantized in one pass (sqz prune --type),
# (b) pruned to f16, then `sqz quantize --method gptq`, (c) pruned to f16, then `sqz convert`
# (plain rounding); KL and ppl on sotu against the dense model, file bytes. One thread (-t 1);
# about half an hour. Files already in OUT_DIR are reused.
set -e
O=${1:?usage: bench/prune_gptq_table.sh OUT_DIR}
SQZ=${SQZ:-build/sqz}
M=../shared/models/sqz-llama-26m
CAL="--calib ../shared/data/calib/calib-1m.txt --calib-tokens 32768"
T="-t 1 --no-progress"
mkdir -p "$O"
for lvl in d50 nm24; do
    case $lvl in d50) L="--density 0.5" ;; *) L="--nm 2:4" ;; esac
    [ -f "$O/$lvl-f16.gguf" ] || $SQZ prune $M -o "$O/$lvl-f16.gguf" --method sparsegpt $L $CAL $T --json > "$O/$lvl-f16.json"
    for ty in q4_k q8_0; do
        [ -f "$O/$lvl-$ty-joint.gguf" ] ||
            $SQZ prune $M -o "$O/$lvl-$ty-joint.gguf" --method sparsegpt $L --type $ty $CAL $T --json > "$O/$lvl-$ty-joint.json"
        [ -f "$O/$lvl-$ty-gptq.gguf" ] ||
            $SQZ quantize "$O/$lvl-f16.gguf" -o "$O/$lvl-$ty-gptq.gguf" --type $ty --method gptq $CAL $T --json > "$O/$lvl-$ty-gptq.json"
        [ -f "$O/$lvl-$ty-rtn.gguf" ] ||
            $SQZ convert "$O/$lvl-f16.gguf" -o "$O/$lvl-$ty-rtn.gguf" --type $ty $T --json > "$O/$lvl-$ty-rtn.json"
    done
done
printf '%-22s %12s %9s %9s\n' file bytes KL ppl
for f in "$O"/*-f16.gguf "$O"/*-joint.gguf "$O"/*-gptq.gguf "$O"/*-rtn.gguf; do
    p=${f%.gguf}.ppl.json
    [ -s "$p" ] || $SQZ ppl "$f" -f ../shared/data/domains/sotu.test.txt --ctx 1024 --max-tokens 20481 \
        --kld-base $M --kld-cache "$O/sotu-base.kld" --json $T > "$p"
    python3 -c 'import json,sys,os; j=json.load(open(sys.argv[1])); print("%-22s %12d %9.4f %9.3f" % (os.path.basename(sys.argv[2]), os.path.getsize(sys.argv[2]), j.get("kld", j.get("kl_mean", float("nan"))), j["ppl"]))' "$p" "$f"
done
