#!/bin/sh
# bench/dp_table.sh - the data-parallel fine-tuning table of issue 15: 2 ranks (mpirun), the
# ft-shakespeare recipe (150 steps, 8 windows of 256, AdamW 3e-4, warm-up 20, clip 1) with each
# gradient exchange; then rank 0 on shakespeare and rank 1 on bible (plain error feedback vs
# EControl). One JSON line per run on stdout (bytes, ratio to none, losses, held-out ppl, wall
# time); the models and full logs go to OUT (default /tmp/sqz-dp). Long (minutes a run): run it
# alone on the machine. Usage: sh bench/dp_table.sh [OUT] [RUN ...]  (runs: see the list below)
set -e
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/sqz-dp}; shift 2>/dev/null || true
SHARED=$(cd "${SQZ_SHARED:-../shared}" && pwd)
M=$SHARED/models/sqz-llama-14m
D=$SHARED/models/merge
mkdir -p "$OUT"
SQZ=${SQZ:-build/sqz}
MPI="mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1"

run() { # name spec files...
    name=$1 spec=$2 files=$3
    t0=$(date +%s.%N)
    $MPI "$SQZ" finetune "$M" -f "$files" -o "$OUT/$name.gguf" --eval-file "$D/shakespeare.test.txt" \
        --dp "$spec" --json --no-progress > "$OUT/$name.json" 2> "$OUT/$name.err"
    t1=$(date +%s.%N)
    python3 - "$OUT" "$name" "$spec" "$t0" "$t1" <<'PY'
import json, sys, os
out, name, spec, t0, t1 = sys.argv[1:]
d = json.load(open(f"{out}/{name}.json"))
none = f"{out}/none.json" if not name.endswith("-dom") else f"{out}/none-dom.json"
ref = json.load(open(none))["dp"]["bytes_sent"] if os.path.exists(none) else None
b = d["dp"]["bytes_sent"]
print(json.dumps({"run": name, "dp": spec, "bytes": b, "ratio_vs_none": ref / b if ref else None,
                  "first_loss": d["first_loss"], "last_loss": d["last_loss"],
                  "eval_ppl_before": d.get("eval_ppl_before"), "eval_ppl_after": d.get("eval_ppl_after"),
                  "compute_s": d["dp"]["compute_s"], "compress_s": d["dp"]["compress_s"],
                  "comm_s": d["dp"]["comm_s"], "wall_s": float(t1) - float(t0)}), flush=True)
PY
}

S=$D/shakespeare.train.txt
B=$D/bible.train.txt
RUNS=${*:-"none dgc dgc25 topk powersgd4 powersgd2 lgreco lgreco8 none-dom topk-dom econtrol-dom"}
for r in $RUNS; do
    case $r in
    none) run none none "$S" ;;
    dgc) run dgc dgc:density=0.001 "$S" ;;
    topk) run topk topk:density=0.001 "$S" ;;
    powersgd4) run powersgd4 powersgd:rank=4 "$S" ;;
    powersgd2) run powersgd2 powersgd:rank=2 "$S" ;;
    powersgd8) run powersgd8 powersgd:rank=8 "$S" ;;
    powersgd16) run powersgd16 powersgd:rank=16 "$S" ;;
    lgreco) run lgreco lgreco:base=powersgd,levels=1/2/4/8/16,ref=4 "$S" ;;
    lgreco8) run lgreco8 lgreco:base=powersgd,levels=1/2/4/8/16,ref=8 "$S" ;;
    lgreco16) run lgreco16 lgreco:base=powersgd,levels=1/2/4/8/16/32,ref=16 "$S" ;;
    dgc25) run dgc25 dgc:density=0.0025 "$S" ;;
    dgc28) run dgc28 dgc:density=0.0028 "$S" ;;
    topk28) run topk28 topk:density=0.0028 "$S" ;;
    none-dom) run none-dom none "$S,$B" ;;
    topk-dom) run topk-dom topk:density=0.001 "$S,$B" ;;
    econtrol-dom) run econtrol-dom econtrol:density=0.001 "$S,$B" ;;
    econtrol-dom-eta1) run econtrol-dom-eta1 econtrol:density=0.001,eta=1 "$S,$B" ;;
    *) echo "unknown run $r" >&2; exit 2 ;;
    esac
done
