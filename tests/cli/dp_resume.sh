#!/bin/sh
# CLI: checkpoint / resume under data parallel (`mpirun -np 2 sqz finetune ... --dp SPEC`).
# - for every compressor with state (error feedback, momentum, PowerSGD's factors, L-GreCo's
#   levels): 2 steps with --checkpoint, resumed to 3, write the uninterrupted 3-step run's file
#   bit for bit (each rank saved its compressor's state in CK.rankR.gc and read it back);
# - refused, with status 1, a clear message and nothing written: a resume with another number
#   of ranks, another compressor spec, a stateless exchange or one process where the checkpoint
#   holds a compressor's state, and a stateful one where it holds none.
# LoRA adapters (rank 4) keep the compressors' work small: the state is saved and restored the
# same way whatever tensors are trained.
DP_WHAT="data-parallel resume tests" DP_TRAIN_BYTES=20000
. "$(dirname "$0")/lib/dp_env.sh"
R="$BASE -f $tmp/train.txt --batch 2 --ctx 16 --lora 4 --no-progress -t 1"

# 3 steps = 2 steps + checkpoint + resume to 3, per compressor (lgreco re-chooses its levels
# every step, so the resumed run starts from levels chosen before the checkpoint)
for spec in topk:density=0.05 dgc:density=0.05,warmup=2 powersgd:rank=2 econtrol:density=0.05 \
    lgreco:base=powersgd,levels=1/2/4,ref=2,every=1 lgreco:base=topk,every=1; do
    ck="$tmp/ck"
    rm -f "$ck" "$ck".rank*.gc
    if $MPI -np 2 "$SQZ" finetune $R --dp "$spec" --steps 3 -o "$tmp/full.gguf" 2> "$tmp/err" &&
        $MPI -np 2 "$SQZ" finetune $R --dp "$spec" --steps 2 -o "$tmp/half.gguf" --checkpoint "$ck" 2>> "$tmp/err" &&
        $MPI -np 2 "$SQZ" finetune $R --dp "$spec" --steps 3 -o "$tmp/resumed.gguf" --resume "$ck" 2>> "$tmp/err" &&
        cmp -s "$tmp/full.gguf" "$tmp/resumed.gguf" && ! cmp -s "$tmp/half.gguf" "$tmp/resumed.gguf"; then
        echo "ok - --dp $spec: 2 steps + checkpoint + resume to 3 = 3 steps, bit for bit"
    else
        echo "not ok - --dp $spec: the resumed run is not the uninterrupted one"
        sed 's/^/#   /' "$tmp/err" | head -5
    fi
done
[ -f "$tmp/ck.rank0.gc" ] && [ -f "$tmp/ck.rank1.gc" ] && [ -z "$(ls "$tmp" | grep '\.tmp$')" ] &&
    echo "ok - each rank wrote its side file, no temporary left" || echo "not ok - side files: $(ls "$tmp")"

# refusals: status 1, WANT on stderr, OUT not written, no temporary file left
bad() { # what want out cmd...
    what=$1 want=$2 out=$3
    shift 3
    "$@" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    if [ "$rc" -eq 1 ] && grep -q -- "$want" "$tmp/err" && [ ! -e "$out" ] && [ -z "$(ls "$tmp" | grep '\.tmp$')" ]; then
        echo "ok - $what: $(grep -- "$want" "$tmp/err" | head -1)"
    else
        echo "not ok - $what: status $rc, want '$want'"
        sed 's/^/#   /' "$tmp/err" | head -5
    fi
}
# the last checkpoint above: lgreco:base=topk,every=1 over 2 ranks at step 2
S="lgreco:base=topk,every=1"
bad "resume on 1 rank what 2 saved" "saved by 2 ranks" "$tmp/e1.gguf" \
    $MPI -np 1 "$SQZ" finetune $R --dp "$S" --steps 3 -o "$tmp/e1.gguf" --resume "$tmp/ck"
bad "resume with another compressor spec" "saved with --dp $S" "$tmp/e2.gguf" \
    $MPI -np 2 "$SQZ" finetune $R --dp "lgreco:base=topk,every=2" --steps 3 -o "$tmp/e2.gguf" --resume "$tmp/ck"
bad "resume with a stateless exchange" "holds the state of --dp $S" "$tmp/e3.gguf" \
    $MPI -np 2 "$SQZ" finetune $R --dp none --steps 3 -o "$tmp/e3.gguf" --resume "$tmp/ck"
bad "resume in one process" "holds the state of --dp $S" "$tmp/e4.gguf" \
    "$SQZ" finetune $R --steps 3 -o "$tmp/e4.gguf" --resume "$tmp/ck"
# a checkpoint of one process has no compressor state to resume a stateful --dp from
"$SQZ" finetune $R --steps 2 -o "$tmp/one.gguf" --checkpoint "$tmp/ck1" 2> "$tmp/err" || sed 's/^/#   /' "$tmp/err"
bad "stateful resume of a checkpoint without side files" "no compressor state" "$tmp/e5.gguf" \
    $MPI -np 2 "$SQZ" finetune $R --dp dgc:density=0.05 --steps 3 -o "$tmp/e5.gguf" --resume "$tmp/ck1"
# a checkpoint that one rank cannot write (its temporary name is taken by a folder): every rank
# stops, and none of the set is left behind
mkdir -p "$tmp/w/ck.rank1.gc.tmp"
$MPI -np 2 "$SQZ" finetune $R --dp dgc:density=0.05 --steps 1 -o "$tmp/w/e6.gguf" --checkpoint "$tmp/w/ck" \
    > "$tmp/out" 2> "$tmp/err"
rc=$?
if [ "$rc" -ne 0 ] && grep -q "other rank(s) failed to write the checkpoint" "$tmp/err" &&
    [ "$(ls "$tmp/w")" = "ck.rank1.gc.tmp" ]; then
    echo "ok - a rank that cannot write its side file: all stop, nothing written ($(grep -c . "$tmp/err") lines on stderr)"
else
    echo "not ok - a failed side file: status $rc, left $(ls "$tmp/w" | tr '\n' ' ')"
    sed 's/^/#   /' "$tmp/err" | head -5
fi
