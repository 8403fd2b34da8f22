#!/bin/sh
# The Pareto table of issue 18 on sqz-llama-26m: KL divergence and perplexity against bits per
# weight (8 x file bytes / the original model's parameters) for
#   uniform    every matrix at one k-quant (Q2_K..Q6_K)            sqz search --alloc uniform --type T --generations 0
#   knapsack   the multiple-choice knapsack on single-matrix KLs    sqz search --alloc knapsack --generations 0 --bpw B
#   layerwise  Layer-Wise Quantization (blocks by LIM)              sqz search --alloc layerwise --generations 0 --bpw B
#   evopress   EvoPress from the knapsack seed                      sqz search --bpw B $PARETO_EVO_ARGS
#   joint      EvoPress over types and dropped blocks (not a default row) sqz search --levels quant,depth --bpw B $PARETO_EVO_ARGS
#   bitstack   BitStack (not a default row): one stack (sqz bitstack, rank 4, 10 blocks, 16384
#              calibration tokens) loaded with --memory at each budget; its bits per weight
#              count the weights' bytes only (the other rows' count the whole file)
#   base       the f16 model itself (its perplexities; KL 0)
#   llamacpp   llama.cpp's own files in ../shared/models/gguf (llamacpp.json: Q2_K and Q4_K_M with its
#              importance matrix, Q4_0 --pure)
# every sqz row from the same level database (sqz levels MODEL -o DB --calib calib-1m.txt), so
# they differ only in the choice of types. Each file is measured with
#   sqz ppl FILE -f TEXT --ctx 1024 --max-tokens 20481 --kld-base MODEL --kld-cache ... --json
# on sotu, mail and wikitext-2. Output: one JSON line per (row, text) on stdout (or OUT.jsonl),
# and a markdown table on stderr at the end.
#
# Usage: sh bench/pareto_table.sh DB [OUT.jsonl]
# Environment:
#   PARETO_BPW       budgets of the knapsack, layerwise and evopress rows ("2.7 2.9 3.3 3.5 4.1 4.5 5":
#                    Q2_K everywhere, ~2.67 bpw on sqz-llama-26m, is the floor; a budget below it is reported and skipped)
#   PARETO_METHODS   rows to make ("base uniform knapsack layerwise evopress llamacpp")
#   PARETO_TYPES     uniform's types ("q2_k q3_k q4_k q5_k q6_k")
#   PARETO_TEXTS     texts ("sotu mail wikitext2")
#   PARETO_EVO_ARGS  EvoPress's settings ("--generations 40"; sqz search --help)
#   PARETO_SEED_ARGS more arguments of the seed rows (uniform, knapsack, layerwise), e.g. "--pool 8":
#                    their files do not depend on the pool, except layerwise's LIM ranking, which
#                    is measured on it; the pool sets the cost of their search_*_kl
#   PARETO_DIR       where the models, their search JSONs and the base model's logits caches stay
#                    (default: a temporary folder, removed); a model already there is measured
#                    again, not searched again
#   SQZ, SQZ_SHARED, SQZ_MODEL, SQZ_THREADS (1)
# Time at one thread: each seed row takes seconds plus ~1 min of ppl (three texts); an EvoPress
# row at the default 32 offspring and stages 8x1,2x4,1x32 about 1 min per generation.
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
B=${SQZ_MODEL:-$SHARED/models/sqz-llama-26m}
CALIB=$SHARED/data/calib/calib-1m.txt
T=${SQZ_THREADS:-1}
BPWS=${PARETO_BPW:-2.7 2.9 3.3 3.5 4.1 4.5 5}
METHODS=${PARETO_METHODS:-base uniform knapsack layerwise evopress llamacpp}
TYPES=${PARETO_TYPES:-q2_k q3_k q4_k q5_k q6_k}
TEXTS=${PARETO_TEXTS:-sotu mail wikitext2}
EVO=${PARETO_EVO_ARGS:---generations 40}
SEEDA=${PARETO_SEED_ARGS:-}
DB=$1
if [ -z "$DB" ] || [ ! -f "$DB" ]; then
    echo "usage: sh bench/pareto_table.sh DB [OUT.jsonl]   (DB: sqz levels $B -o DB --calib $CALIB)" >&2
    exit 2
fi
[ -n "$2" ] && exec > "$2"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
DIR=${PARETO_DIR:-$tmp/models}
mkdir -p "$DIR" || exit 1
lines=$tmp/lines.jsonl
: > "$lines"
text_file() {
    case $1 in
    sotu | mail | moby) echo "$SHARED/data/domains/$1.test.txt" ;;
    wikitext2) echo "$SHARED/data/wikitext-2/wiki.test.raw" ;;
    esac
}
# the original model's parameters (bits per weight's denominator), from its safetensors header
NPARAMS=$(python3 - "$B/model.safetensors" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "rb")
h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
n = 0
for k, v in h.items():
    if k != "__metadata__":
        p = 1
        for d in v["shape"]: p *= d
        n += p
print(n)
PY
)

# measure NAME TARGET FILE SEARCH_JSON [MEMORY]: ppl and KL on every text, one line each (MEMORY:
# a BitStack file loaded at that many bytes, which are then its size)
measure() {
    name=$1 target=$2 file=$3 sj=$4 mem=${5:-}
    for d in $TEXTS; do
        f=$(text_file "$d")
        "$SQZ" ppl "$file" ${mem:+--memory "$mem"} -f "$f" --ctx 1024 --max-tokens 20481 --kld-base "$B" \
            --kld-cache "$DIR/$d.kldc" --json --no-progress -t "$T" > "$tmp/ppl.json" 2> /dev/null ||
            { echo "pareto_table: ppl $name $target $d failed" >&2; continue; }
        python3 - "$name" "$target" "$d" "$file" "$sj" "$tmp/ppl.json" "$NPARAMS" "$mem" <<'PY' | tee -a "$lines"
import json, os, sys
name, target, d, file, sj, pj, n, mem = sys.argv[1:]
p = json.load(open(pj))
s = json.load(open(sj)) if sj != "-" else {}
b = p["weight_bytes"] if mem else os.path.getsize(file) if os.path.isfile(file) else os.path.getsize(os.path.join(file, "model.safetensors"))
print(json.dumps({"method": name, "target": target, "text": d, "file": os.path.basename(file), "file_bytes": b,
                  "bits_per_weight": round(8 * b / int(n), 4), "ppl": p["ppl"], "kld": p.get("kld"),
                  "kld_p99": p.get("kld_p99"), "top1_agree": p.get("top1_agree"),
                  "search_seed_kl": s.get("seed_kl"), "search_best_kl": s.get("best_kl"),
                  "search_seconds": s.get("seconds"), "generations": s.get("generations")}), flush=True)
PY
    done
}

# search NAME TARGET OUT ARGS...: sqz search into PARETO_DIR (kept: not run again), then measure
search() {
    name=$1 target=$2 out=$DIR/$3
    shift 3
    if [ ! -f "$out" ] || [ ! -f "$out.search.json" ]; then
        "$SQZ" search "$B" -o "$out" --db "$DB" --calib "$CALIB" --json --no-progress -t "$T" "$@" \
            > "$tmp/s.json" 2> "$tmp/s.err" || { echo "pareto_table: $name $target: $(cat "$tmp/s.err")" >&2; return; }
        mv "$tmp/s.json" "$out.search.json"
    fi
    measure "$name" "$target" "$out" "$out.search.json"
}

for m in $METHODS; do
    case $m in
    base) measure base f16 "$B" - ;;
    # shellcheck disable=SC2086 # SEEDA and EVO are lists of arguments
    uniform) for t in $TYPES; do search uniform "$t" "uniform-$t.gguf" --alloc uniform --type "$t" --generations 0 $SEEDA; done ;;
    knapsack | layerwise)
        # shellcheck disable=SC2086
        for b in $BPWS; do search "$m" "$b" "$m-$b.gguf" --alloc "$m" --bpw "$b" --generations 0 $SEEDA; done ;;
    evopress)
        # shellcheck disable=SC2086 # EVO is a list of arguments
        for b in $BPWS; do search evopress "$b" "evopress-$b.gguf" --bpw "$b" $EVO; done ;;
    joint)
        # shellcheck disable=SC2086
        for b in $BPWS; do search joint "$b" "joint-$b.gguf" --levels quant,depth --bpw "$b" $EVO; done ;;
    bitstack)
        if [ ! -f "$DIR/bitstack.sqzf" ]; then
            "$SQZ" bitstack "$B" -o "$DIR/bitstack.sqzf" --calib "$CALIB" --calib-tokens 16384 --rank 4 --iters 10 \
                --sort-windows 1 --no-progress -t "$T" 2> "$tmp/b.err" || { echo "pareto_table: bitstack: $(cat "$tmp/b.err")" >&2; continue; }
        fi
        for b in $BPWS; do
            measure bitstack "$b" "$DIR/bitstack.sqzf" - "$(python3 -c "print(int($b * $NPARAMS / 8))")"
        done ;;
    llamacpp)
        for f in "$SHARED"/models/gguf/*.gguf; do
            [ -f "$f" ] || continue
            n=$(basename "$f" .gguf)
            measure llamacpp "${n#sqz-llama-26m-}" "$f" -
        done ;;
    *) echo "pareto_table: unknown method $m" >&2 ;;
    esac
done

python3 - "$lines" "$TEXTS" <<'PY' >&2
import json, sys
rows, texts = {}, sys.argv[2].split()
for l in open(sys.argv[1]):
    r = json.loads(l)
    k = (r["method"], r["target"])
    rows.setdefault(k, {"bpw": r["bits_per_weight"], "bytes": r["file_bytes"]})[r["text"]] = r
print("| method | target | bpw | MB | " + " | ".join(f"KL {t}" for t in texts) + " | " + " | ".join(f"ppl {t}" for t in texts) + " |")
print("|---|---|---|---|" + "---|" * (2 * len(texts)))
for (m, t), v in sorted(rows.items(), key=lambda kv: kv[1]["bpw"]):
    kl = " | ".join(f"{v[x]['kld']:.4f}" if x in v and v[x]["kld"] is not None else "" for x in texts)
    pp = " | ".join(f"{v[x]['ppl']:.3f}" if x in v else "" for x in texts)
    print(f"| {m} | {t} | {v['bpw']:.3f} | {v['bytes'] / 1e6:.2f} | {kl} | {pp} |")
PY
