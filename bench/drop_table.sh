#!/bin/sh
# Whole blocks against attention / MLP sub-blocks dropped from sqz-llama-26m (least influence
# on calib-1m.txt's default 32768 tokens): for each choice, `sqz drop --json` then `sqz ppl
# --ctx 1024 --max-tokens 20481 --kld-base MODEL` on sotu, mail and wikitext-2; one JSON line per
# (choice, text) and a markdown table on stderr (docs/drop-subblocks.md).
# Usage: sh bench/drop_table.sh [OUT.jsonl]   (about 10 minutes at one thread)
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
B=${SQZ_MODEL:-$SHARED/models/sqz-llama-26m}
CALIB=$SHARED/data/calib/calib-1m.txt
T=${SQZ_THREADS:-1}
[ -n "$1" ] && exec > "$1"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
texts="sotu:$SHARED/data/domains/sotu.test.txt mail:$SHARED/data/domains/mail.test.txt wikitext2:$SHARED/data/wikitext-2/wiki.test.raw"
run() { # name out drop-args...
    name=$1 out=$2
    shift 2
    if [ "$name" = base ]; then out=$B; echo '{}' > "$tmp/drop.json"
    else "$SQZ" drop "$B" -o "$out" --calib "$CALIB" --json --no-progress -t "$T" "$@" > "$tmp/drop.json" ||
        { echo "drop_table: $name failed" >&2; return; }
    fi
    for dt in $texts; do
        d=${dt%%:*} f=${dt#*:}
        "$SQZ" ppl "$out" -f "$f" --ctx 1024 --max-tokens 20481 --kld-base "$B" --kld-cache "$tmp/$d.kldc" \
            --json --no-progress -t "$T" > "$tmp/ppl.json" || { echo "drop_table: ppl $name $d failed" >&2; continue; }
        python3 - "$name" "$d" "$tmp/drop.json" "$tmp/ppl.json" "$*" <<'PY'
import json, sys
name, d, dj, pj, args = sys.argv[1:]
dr, p = json.load(open(dj)), json.load(open(pj))
print(json.dumps({"choice": name, "args": args, "text": d, "params": dr.get("params"), "file_bytes": dr.get("file_bytes"),
                  "dropped": dr.get("dropped"), "dropped_attn": dr.get("dropped_attn"), "dropped_mlp": dr.get("dropped_mlp"),
                  "ppl": p["ppl"], "kld": p.get("kld"), "top1_agree": p.get("top1_agree")}), flush=True)
PY
    done
}
run base -
run blocks1 "$tmp/b1.gguf" --blocks 1
run blocks2 "$tmp/b2.gguf" --blocks 2
run attn2 "$tmp/a2.sqzf" --attn 2
run attn4 "$tmp/a4.sqzf" --attn 4
run mlp2 "$tmp/m2.sqzf" --mlp 2
run mlp4 "$tmp/m4.sqzf" --mlp 4
run mix1 "$tmp/x1.sqzf" --attn 1 --mlp 1
run mix2 "$tmp/x2.sqzf" --attn 2 --mlp 2
