#!/bin/sh
# CLI: data-parallel fine-tuning, `mpirun -np 2 sqz finetune ... --dp SPEC` (Open MPI, as root).
# - two ranks with --dp none compute what one process does with the same batch: the same loss
#   at every step and the same held-out perplexity (to float reassociation);
# - the gradient bytes each rank sent (counted where MPI_Sendrecv is called) equal each
#   compressor's formula, worked out here from the model's shapes (config.json);
# - bad input: a batch that does not split over the ranks, ranks without --dp, ranks given
#   different options, an unknown compressor: exit status 1, a clear message, nothing written.
DP_WHAT="data-parallel tests" DP_TRAIN_BYTES=60000
. "$(dirname "$0")/lib/dp_env.sh"
TEST=$SHARED/models/merge/shakespeare.test.txt
head -c 4000 "$TEST" > "$tmp/test.txt"
COMMON="-f $tmp/train.txt --steps 3 --batch 4 --ctx 32 --type f32 --eval-file $tmp/test.txt --json --no-progress"

# one process vs two ranks
"$SQZ" finetune "$BASE" $COMMON -t 1 -o "$tmp/one.gguf" > "$tmp/one.json" 2> "$tmp/one.err"
$MPI -np 2 "$SQZ" finetune "$BASE" $COMMON -o "$tmp/two.gguf" --dp none > "$tmp/two.json" 2> "$tmp/two.err"
python3 - "$tmp/one.json" "$tmp/two.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
la, lb = [s["loss"] for s in a["log"]], [s["loss"] for s in b["log"]]
worst = max(abs(x - y) / abs(x) for x, y in zip(la, lb))
ok = len(la) == len(lb) == 3 and worst < 1e-5
print(("ok" if ok else "not ok") + f" - 2 ranks --dp none = 1 process, batch 4: losses {lb} vs {la} (worst rel {worst:.2g})")
pa, pb = a["eval_ppl_after"], b["eval_ppl_after"]
ok = abs(pa - pb) / pa < 1e-4 and pa < a["eval_ppl_before"]
print(("ok" if ok else "not ok") + f" - held-out ppl after 3 steps: 2 ranks {pb:.5f}, 1 process {pa:.5f}")
PY
[ -f "$tmp/two.gguf" ] && echo "ok - rank 0 wrote the model" || echo "not ok - no model from the 2-rank run"

# bytes = formula, per compressor (3 steps)
for spec in none fp16 topk:density=0.01 dgc:density=0.002,warmup=2 powersgd:rank=2 \
    lgreco:base=powersgd,ref=4,every=100 econtrol:density=0.003; do
    $MPI -np 2 "$SQZ" finetune "$BASE" -f "$tmp/train.txt" --steps 3 --batch 2 --ctx 16 -o "$tmp/b.gguf" \
        --dp "$spec" --json --no-progress > "$tmp/b.json" 2> "$tmp/b.err" || { echo "not ok - --dp $spec failed"; cat "$tmp/b.err" | head -5; continue; }
    python3 - "$BASE/config.json" "$tmp/b.json" "$spec" <<'PY'
import json, math, sys
c = json.load(open(sys.argv[1])); d = json.load(open(sys.argv[2]))["dp"]; spec = sys.argv[3]
D, F, V, L = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
hd = c.get("head_dim", D // c["num_attention_heads"])
q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
shapes = [(V, D)]
for _ in range(L):
    shapes += [(1, D), (q, D), (kv, D), (kv, D), (D, q), (1, D), (F, D), (F, D), (D, F)]
shapes += [(1, D)]
if not c.get("tie_word_embeddings", False): shapes += [(V, D)]
n = sum(r * k for r, k in shapes)
name, _, args = spec.partition(":")
a = dict(kv.split("=") for kv in args.split(",")) if args else {}
cnt = lambda m, dens: max(1, math.ceil(dens * m))
steps = 3
if name == "none": want = 4 * n * steps
elif name == "fp16": want = 2 * n * steps
elif name in ("topk", "econtrol"):
    want = steps * 8 * sum(cnt(r * k, float(a["density"])) for r, k in shapes)
elif name == "dgc":
    w, dens = int(a["warmup"]), float(a["density"])
    want = 0
    for s in range(steps):
        ds = max(0.25 ** (s * 4 // w + 1), dens) if s < w else dens
        want += 8 * sum(cnt(r * k, ds) for r, k in shapes)
else:
    r = int(a.get("rank", a.get("ref", 4)))
    pays = lambda rows, cols: rows > 1 and r * (rows + cols) < rows * cols
    want = steps * 4 * sum(r * (rows + cols) if pays(rows, cols) else rows * cols for rows, cols in shapes)
got = d["bytes_sent"]
print(("ok" if got == want else "not ok") + f" - --dp {spec}: rank 0 sent {got} bytes, formula {want} ({4 * n * steps / got:.1f}x fewer than none)")
PY
done

# bad input: status 1, a message on stderr containing WANT, no output
bad() { # what want out cmd...
    what=$1 want=$2 out=$3
    shift 3
    "$@" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    if [ "$rc" -ne 0 ] && grep -q -- "$want" "$tmp/err" && [ ! -e "$out" ] && [ -z "$(ls "$tmp" | grep '\.tmp')" ]; then
        echo "ok - $what: $(grep -- "$want" "$tmp/err" | head -1)"
    else
        echo "not ok - $what: status $rc, want '$want'"
        sed 's/^/#   /' "$tmp/err" | head -5
    fi
}
B="$BASE -f $tmp/train.txt --steps 2 --ctx 16 --no-progress"
bad "batch 3 over 2 ranks" "does not split over 2 ranks" "$tmp/e1.gguf" $MPI -np 2 "$SQZ" finetune $B --batch 3 --dp none -o "$tmp/e1.gguf"
bad "2 ranks without --dp" "without --dp" "$tmp/e2.gguf" $MPI -np 2 "$SQZ" finetune $B --batch 2 -o "$tmp/e2.gguf"
bad "ranks given different options" "different options" "$tmp/e3.gguf" $MPI -np 1 "$SQZ" finetune $B --batch 2 --lr 1e-4 \
    --dp none -o "$tmp/e3.gguf" : -np 1 "$SQZ" finetune $B --batch 2 --lr 2e-4 --dp none -o "$tmp/e3.gguf"
bad "unknown compressor" "unknown gradient compressor" "$tmp/e4.gguf" "$SQZ" finetune $B --batch 2 --dp zip -o "$tmp/e4.gguf"
bad "powersgd rank 0" "rank 0 is not" "$tmp/e5.gguf" $MPI -np 2 "$SQZ" finetune $B --batch 2 --dp powersgd:rank=0 -o "$tmp/e5.gguf"
