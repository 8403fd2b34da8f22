#!/bin/sh
# CLI: `sqz levels` and `sqz search` on the embedded model (assets/stories260K): bad arguments
# are one line on stderr, exit 2 (usage) or 1 (the library's error), nothing on stdout and no
# output (--alloc: a seed the library does not know, uniform without --type, --type without
# uniform, a seed for the depth space); a depth search writes a GGUF with fewer blocks and OUT.json with the choice and the
# fitness curve; one stopped with --stop-after and resumed from its checkpoint ends with the
# choice and the curve of one that never stopped; mpirun -np 2 gives one process's answer. (The
# quant space needs k-quant-sized rows, which this model lacks: tests/test_search.c covers it
# on sqz-llama-26m.) With ../shared, `sqz levels` on sqz-llama-26m's first block (the head
# included; 256 calibration tokens, plain GPTQ: seconds) under mpirun -np 2 writes the same
# bytes as one process, and so does an MPI build resumed from a part file cut mid-record.
SQZ=${SQZ:-build/sqz}
MODEL=assets/stories260K/stories260K.bin
TEXT=assets/tinystories-valid-slice.txt
SHARED=${SQZ_SHARED:-../shared}
if [ ! -x "$SQZ" ]; then
    echo "not ok - no CLI at $SQZ"
    exit 1
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok - $1"; }
no() { echo "not ok - $1"; fails=$((fails + 1)); }

# bad CMD WANT_STATUS MUST_CONTAIN ARGS...
bad() {
    cmd=$1 want=$2 msg=$3
    shift 3
    "$SQZ" "$cmd" "$MODEL" -o "$tmp/out.gguf" --no-progress "$@" > "$tmp/stdout" 2> "$tmp/stderr"
    st=$?
    lines=$(wc -l < "$tmp/stderr")
    if [ "$st" -eq "$want" ] && [ "$lines" -eq 1 ] && grep -q -- "$msg" "$tmp/stderr" && [ ! -s "$tmp/stdout" ] &&
        [ ! -e "$tmp/out.gguf" ] && [ ! -e "$tmp/out.gguf.json" ]; then
        ok "$cmd $*: $(cat "$tmp/stderr")"
    else
        no "$cmd $*: status $st (want $want), $lines stderr lines: $(cat "$tmp/stderr")"
    fi
}

bad levels 1 "calibration text" 
bad search 1 "needs a level database" --calib "$TEXT" --bpw 3
bad search 1 "needs a budget" --calib "$TEXT" --db "$tmp/none.db"
bad search 1 "cannot open the level database" --calib "$TEXT" --db "$tmp/none.db" --bpw 3
bad search 1 "needs --blocks" --calib "$TEXT" --levels depth
bad search 1 "drop 1..4" --calib "$TEXT" --levels depth --blocks 5
bad search 1 "unknown space" --calib "$TEXT" --levels colour --db x --bpw 3
bad search 1 "stages" --calib "$TEXT" --levels depth --blocks 1 --stages 2x1,2x2
bad search 1 "cannot open the checkpoint" --calib "$TEXT" --levels depth --blocks 1 --resume "$tmp/none.ckpt"
bad search 2 "invalid value" --calib "$TEXT" --bpw -1 --db x
bad search 1 "needs --type" --calib "$TEXT" --db x --alloc uniform
bad search 1 "cannot open the level database" --calib "$TEXT" --levels quant,depth --db "$tmp/none.db" --bpw 3
bad search 1 "alloc uniform's type" --calib "$TEXT" --db x --bpw 3 --type q3_k
bad search 1 "not depth's" --calib "$TEXT" --levels depth --blocks 1 --alloc layerwise
bad search 1 "unknown alloc 'greedy' (known: knapsack, layerwise, uniform)" --calib "$TEXT" --db "$tmp/none.db" --bpw 3 --alloc greedy
bad search 1 "cannot open the level database" --calib "$TEXT" --db "$tmp/none.db" --alloc uniform --type q3_k

common="--levels depth --blocks 2 --calib $TEXT --calib-ctx 64 --pool 8 --generations 8 --offspring 4 --stages 2x2,1x8 --seed 5 --no-progress -t 1"
if "$SQZ" search "$MODEL" -o "$tmp/a.gguf" $common --json > "$tmp/a.out" 2> "$tmp/a.err"; then
    ok "depth search: $(cat "$tmp/a.out")"
else
    no "depth search: $(cat "$tmp/a.err")"
fi
if grep -q '"dropped":\[' "$tmp/a.out" && grep -q '"fitness_curve"' "$tmp/a.gguf.json" &&
    "$SQZ" info "$tmp/a.gguf" 2>/dev/null | grep -q "^layers *3"; then
    ok "the GGUF has 3 of 5 blocks; a.gguf.json has the choice and the curve"
else
    no "depth search output: $(cat "$tmp/a.out") / $("$SQZ" info "$tmp/a.gguf" 2>&1 | grep layers)"
fi
"$SQZ" search "$MODEL" -o "$tmp/b.gguf" $common --checkpoint "$tmp/b.ckpt" --checkpoint-every 2 --stop-after 3 \
    > /dev/null 2> "$tmp/b.err"
if [ -e "$tmp/b.ckpt" ] && [ ! -e "$tmp/b.gguf" ] && grep -q "resume with --resume" "$tmp/b.err"; then
    ok "--stop-after 3: a checkpoint, no model yet"
else
    no "--stop-after 3: $(cat "$tmp/b.err")"
fi
"$SQZ" search "$MODEL" -o "$tmp/b.gguf" $common --resume "$tmp/b.ckpt" > /dev/null 2> "$tmp/b.err"
strip() { grep -v -e '"seconds"' -e '"evaluations"' "$1"; } # this run's own
if [ -e "$tmp/b.gguf" ] && strip "$tmp/a.gguf.json" > "$tmp/a.j" && strip "$tmp/b.gguf.json" > "$tmp/b.j" &&
    cmp -s "$tmp/a.j" "$tmp/b.j" && cmp -s "$tmp/a.gguf" "$tmp/b.gguf"; then
    ok "resumed: the same choice, curve and file as the uninterrupted search"
else
    no "resumed search differs: $(diff "$tmp/a.j" "$tmp/b.j" | head -5) $(cat "$tmp/b.err")"
fi
"$SQZ" search "$MODEL" -o "$tmp/c.gguf" --levels depth --blocks 1 --calib "$TEXT" --calib-ctx 64 --pool 4 \
    --generations 2 --offspring 2 --stages 1x1 --seed 6 --no-progress --resume "$tmp/b.ckpt" > /dev/null 2> "$tmp/c.err"
if [ $? -eq 1 ] && grep -q "another search" "$tmp/c.err" && [ ! -e "$tmp/c.gguf" ]; then
    ok "another search's checkpoint is refused: $(cat "$tmp/c.err")"
else
    no "another search's checkpoint: $(cat "$tmp/c.err")"
fi
# mpirun -np 2: the ranks split each stage's candidates; the same answer as one process
if command -v mpirun > /dev/null; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 # Open MPI's own allocations
    mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -x ASAN_OPTIONS -np 2 \
        "$SQZ" search "$MODEL" -o "$tmp/m.gguf" $common --json > "$tmp/m.out" 2> "$tmp/m.err"
    strip "$tmp/m.gguf.json" > "$tmp/m.j" 2>/dev/null
    if [ "$(grep -c '"mpi_ranks":2' "$tmp/m.out")" -eq 1 ] && cmp -s "$tmp/a.j" "$tmp/m.j" && cmp -s "$tmp/a.gguf" "$tmp/m.gguf"; then
        ok "mpirun -np 2: one report, the same choice, curve and file as one process ($(grep -o '"mpi_bytes_per_generation":[0-9.]*' "$tmp/m.out"))"
    else
        no "mpirun -np 2: $(cat "$tmp/m.out" "$tmp/m.err" | head -5) $(diff "$tmp/a.j" "$tmp/m.j" | head -4)"
    fi
    # the level database: 2 ranks split the levels, rank 0 writes one process's bytes
    M26=$SHARED/models/sqz-llama-26m CALIB=$SHARED/data/calib/calib-1m.txt
    if [ -d "$M26" ] && [ -f "$CALIB" ]; then
        lv="--calib $CALIB --calib-tokens 256 --calib-ctx 64 --alloc-windows 1 --plain-gptq --no-progress --json"
        mp="mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -x ASAN_OPTIONS -np 2"
        "$SQZ" drop "$M26" -o "$tmp/b1.gguf" --block-list 1,2,3,4,5,6,7 --type f16 --no-progress > /dev/null 2>&1
        "$SQZ" levels "$tmp/b1.gguf" -o "$tmp/one.db" $lv -t 1 > "$tmp/l1.out" 2> "$tmp/l1.err"
        $mp "$SQZ" levels "$tmp/b1.gguf" -o "$tmp/two.db" $lv > "$tmp/l2.out" 2> "$tmp/l2.err"
        if [ -s "$tmp/one.db" ] && [ "$(grep -c '"mpi_ranks":2' "$tmp/l2.out")" -eq 1 ] &&
            grep -q '"levels_measured":40' "$tmp/l2.out" && cmp -s "$tmp/one.db" "$tmp/two.db"; then
            ok "levels under mpirun -np 2: one report, the same database bytes as one process"
        else
            no "levels under mpirun -np 2: $(cat "$tmp/l1.err" "$tmp/l2.out" "$tmp/l2.err" | head -5)"
        fi
        size=$(wc -c < "$tmp/one.db")
        head -c $((size * 35 / 100)) "$tmp/one.db" > "$tmp/cut.db.part"
        $mp "$SQZ" levels "$tmp/b1.gguf" -o "$tmp/cut.db" $lv > "$tmp/l3.out" 2> "$tmp/l3.err"
        if grep -q '"levels_resumed":[1-9]' "$tmp/l3.out" && cmp -s "$tmp/one.db" "$tmp/cut.db"; then
            ok "an MPI build resumed from a part file cut mid-record: the same bytes ($(grep -o '"levels_resumed":[0-9]*' "$tmp/l3.out"))"
        else
            no "resumed MPI build: $(cat "$tmp/l3.out" "$tmp/l3.err" | head -5)"
        fi
    else
        echo "skip - no sqz-llama-26m or calib-1m.txt under $SHARED: the level database under mpirun"
    fi
else
    echo "not ok - no mpirun: install-deps.sh installs openmpi-bin"
    fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
