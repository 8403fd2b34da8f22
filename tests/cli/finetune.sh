#!/bin/sh
# CLI: `sqz finetune` (full and --lora) and `--lora ADAPTER` on the other commands.
# - bad input: a quantized model trained in full, an empty training text, a context longer
#   than the text, bad LoRA targets, a file that is not an adapter: exit status 1, one line on
#   stderr, nothing written;
# - a short run of each kind writes its file: the full fine-tune a GGUF that `sqz ppl` loads, the
#   LoRA run an adapter whose merged model's perplexity is finetune's own held-out figure
#   (two code paths: the training forward pass with the adapter, and inference on W + s B A);
# - checkpoint / resume: a run stopped at step 2 and resumed to 4 writes the uninterrupted run's
#   file bit for bit; a resume with another recipe, past its step, or from another file fails.
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
BASE=$SHARED/models/sqz-llama-14m
Q4=$SHARED/models/gguf/sqz-llama-26m-Q4_0-pure.gguf
TXT=$SHARED/models/merge/shakespeare.train.txt
TEST=$SHARED/models/merge/shakespeare.test.txt
if [ ! -f "$BASE/model.safetensors" ] || [ ! -f "$TXT" ]; then
    echo "skip - sqz-llama-14m / merge texts missing (set SQZ_SHARED): finetune CLI tests"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
head -c 20000 "$TXT" > "$tmp/train.txt"
head -c 6000 "$TEST" > "$tmp/test.txt"
: > "$tmp/empty.txt"
printf 'To be or not to be' > "$tmp/short.txt"

# bad WHAT OUT MUST_CONTAIN ARGS...: status 1, one stderr line containing MUST_CONTAIN, OUT absent
bad() {
    what=$1 out=$2 want=$3
    shift 3
    "$SQZ" "$@" --no-progress > "$tmp/out" 2> "$tmp/err"
    rc=$?
    lines=$(wc -l < "$tmp/err")
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && grep -q -- "$want" "$tmp/err" && [ ! -e "$out" ] &&
        [ -z "$(ls "$tmp" | grep '\.tmp\.')" ]; then
        echo "ok - $what: $(cat "$tmp/err")"
    else
        echo "not ok - $what: status $rc, $lines stderr lines, want '$want'"
        sed 's/^/#   /' "$tmp/err" | head -5
    fi
}

[ -f "$Q4" ] && bad "full fine-tuning of a Q4_0 GGUF" "$tmp/q.gguf" "q4_0" \
    finetune "$Q4" -f "$tmp/train.txt" -o "$tmp/q.gguf" --steps 1
bad "an empty training text" "$tmp/e.gguf" "tokens" \
    finetune "$BASE" -f "$tmp/empty.txt" -o "$tmp/e.gguf" --steps 1
bad "a context longer than the text" "$tmp/s.gguf" "windows of" \
    finetune "$BASE" -f "$tmp/short.txt" -o "$tmp/s.gguf" --steps 1 --ctx 64
bad "bad LoRA targets" "$tmp/t.gguf" "targets" \
    finetune "$BASE" -f "$tmp/train.txt" -o "$tmp/t.gguf" --steps 1 --lora 4 --lora-targets q,zz
bad "a LoRA adapter that is not .gguf" "$tmp/out.bin" ".gguf" \
    finetune "$BASE" -f "$tmp/train.txt" -o "$tmp/out.bin" --steps 1 --lora 4

# full: 2 steps, a GGUF sqz loads
if "$SQZ" finetune "$BASE" -f "$tmp/train.txt" -o "$tmp/full.gguf" --steps 2 --batch 2 --ctx 64 \
    --no-progress --json > "$tmp/full.json" 2> "$tmp/err" &&
    "$SQZ" ppl "$tmp/full.gguf" -f "$tmp/test.txt" --ctx 64 --no-progress > /dev/null 2>&1; then
    echo "ok - a 2-step full fine-tune writes a GGUF that sqz ppl runs"
else
    echo "not ok - full fine-tune"; sed 's/^/#   /' "$tmp/err" | head -5
fi
# the same 2 steps written as a Hugging Face folder: the same model (to 1e-3: the folder holds
# the norm vectors in f16 too, as HF checkpoints do; the GGUF keeps them f32)
if "$SQZ" finetune "$BASE" -f "$tmp/train.txt" -o "$tmp/full-hf" --steps 2 --batch 2 --ctx 64 \
    --no-progress > /dev/null 2> "$tmp/err" &&
    a=$("$SQZ" ppl "$tmp/full.gguf" -f "$tmp/test.txt" --ctx 64 --no-progress --json | sed 's/.*"ppl":\([0-9.e+-]*\).*/\1/') &&
    b=$("$SQZ" ppl "$tmp/full-hf" -f "$tmp/test.txt" --ctx 64 --no-progress --json | sed 's/.*"ppl":\([0-9.e+-]*\).*/\1/') &&
    python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 1e-3 * a)" "$a" "$b"; then
    echo "ok - the folder output is the GGUF output's model (ppl $a / $b)"
else
    echo "not ok - folder output"; sed 's/^/#   /' "$tmp/err" | head -5
fi
bad "a GGUF model is not an adapter" "$tmp/none" "not a LoRA adapter" \
    ppl "$BASE" -f "$tmp/test.txt" --ctx 64 --lora "$tmp/full.gguf"

# LoRA: 8 steps at a high rate (B moves away from zero), held-out ppl vs sqz ppl --lora
if "$SQZ" finetune "$BASE" -f "$tmp/train.txt" -o "$tmp/lora.gguf" --steps 8 --batch 2 --ctx 64 \
    --lr 3e-3 --warmup 0 --lora 4 --lora-alpha 8 --eval-file "$tmp/test.txt" --no-progress --json \
    > "$tmp/lora.json" 2> "$tmp/err" &&
    "$SQZ" ppl "$BASE" --lora "$tmp/lora.gguf" -f "$tmp/test.txt" --ctx 64 --no-progress --json \
    > "$tmp/ppl.json" 2>> "$tmp/err"; then
    python3 - "$tmp/lora.json" "$tmp/ppl.json" <<'EOF'
import json, sys
f = json.load(open(sys.argv[1])); p = json.load(open(sys.argv[2]))
a, b, base = f["eval_ppl_after"], p["ppl"], f["eval_ppl_before"]
ok = abs(a - b) <= 1e-4 * b and abs(a - base) > 1e-3 * base
print(("ok" if ok else "not ok") + " - LoRA: finetune's held-out ppl %.5f == sqz ppl --lora %.5f (base %.5f)" % (a, b, base))
EOF
else
    echo "not ok - LoRA fine-tune"; sed 's/^/#   /' "$tmp/err" | head -5
fi

# checkpoint / resume: 2 steps saved, then resumed to 4, is the uninterrupted 4-step run bit for bit
R="$BASE -f $tmp/train.txt --batch 2 --ctx 32 --type f32 --no-progress -t 1"
if "$SQZ" finetune $R --steps 4 -o "$tmp/r4.gguf" 2> "$tmp/err" &&
    "$SQZ" finetune $R --steps 2 -o "$tmp/r2.gguf" --checkpoint "$tmp/ck" 2>> "$tmp/err" &&
    "$SQZ" finetune $R --steps 4 -o "$tmp/rr.gguf" --resume "$tmp/ck" 2>> "$tmp/err" &&
    cmp -s "$tmp/r4.gguf" "$tmp/rr.gguf" && ! cmp -s "$tmp/r2.gguf" "$tmp/rr.gguf"; then
    echo "ok - 2 steps + checkpoint + resume to 4 = 4 steps, bit for bit"
else
    echo "not ok - checkpoint / resume"; sed 's/^/#   /' "$tmp/err" | head -5
fi
bad "resume with another learning rate" "$tmp/x1.gguf" "another model or recipe" \
    finetune $R --steps 4 --lr 1e-4 -o "$tmp/x1.gguf" --resume "$tmp/ck"
bad "resume past the checkpoint's step" "$tmp/x2.gguf" "must be more" \
    finetune $R --steps 2 -o "$tmp/x2.gguf" --resume "$tmp/ck"
bad "resume from a file that is not a checkpoint" "$tmp/x3.gguf" "not an sqz fine-tuning checkpoint" \
    finetune $R --steps 4 -o "$tmp/x3.gguf" --resume "$tmp/test.txt"
