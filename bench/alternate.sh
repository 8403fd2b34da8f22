#!/bin/sh
# Alternating rounds of bench_model over several model files (A B C A B C ...), so that a drift
# of the machine's bandwidth hits every file alike: one JSON line per run with decode from an
# empty session, decode after the prompt, prefill, the weights' bytes, the copy ceiling and the
# CPU other processes took (above ~0.1 the run is noise). Compare medians over the rounds.
# Usage: sh bench/alternate.sh ROUNDS FILE... (env THREADS=2 PROMPT=512 GEN=64)
BENCH=${BENCH:-build/bench/bench_model}
R=${1:?usage: alternate.sh ROUNDS FILE...}
shift
for r in $(seq 1 "$R"); do
    for f in "$@"; do
        "$BENCH" "$f" --threads-list "${THREADS:-2}" --reps 1 --prompt "${PROMPT:-512}" --gen "${GEN:-64}" \
            --ppl-tokens 1025 --bw-mib 128 2> /dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin); t = d["runs"][0]
print(json.dumps({"file": sys.argv[1], "round": int(sys.argv[2]), "decode_empty_tps": t["decode_empty_tps"],
                  "decode_tps": t["decode_tps"], "prefill_tps": t["prefill_tps"], "weight_bytes": d["weight_bytes"],
                  "decode_ceiling_tps": t["decode_ceiling_tps"], "other_processes_cores": d["other_processes_cores"]}))' "$f" "$r"
    done
done
