#!/bin/sh
# CLI: `sqz lowrank` and `sqz drop` on the embedded model (assets/stories260K): bad parameters
# are one line on stderr, exit status 2 (usage) or 1 (the library's error), nothing on stdout and
# no output file; good runs write files that `sqz ppl` scores, and --json reports what was kept.
SQZ=${SQZ:-build/sqz}
MODEL=assets/stories260K/stories260K.bin
X=assets/tinystories-valid-slice.txt
if [ ! -x "$SQZ" ]; then
    echo "not ok - no CLI at $SQZ"
    exit 1
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0

# bad COMMAND WANT_STATUS MUST_CONTAIN ARGS...
bad() {
    cmd=$1 want=$2 msg=$3
    shift 3
    "$SQZ" "$cmd" "$MODEL" -o "$tmp/out" --no-progress "$@" > "$tmp/stdout" 2> "$tmp/stderr"
    st=$?
    lines=$(wc -l < "$tmp/stderr")
    if [ "$st" -eq "$want" ] && [ "$lines" -eq 1 ] && grep -q -- "$msg" "$tmp/stderr" && [ ! -s "$tmp/stdout" ] &&
        [ ! -e "$tmp/out" ]; then
        echo "ok - $cmd $*: $(cat "$tmp/stderr")"
    else
        echo "not ok - $cmd $*: status $st (want $want), $lines stderr lines: $(cat "$tmp/stderr")"
        fails=$((fails + 1))
    fi
}

bad lowrank 2 "invalid value" --method svd --params 1
bad lowrank 2 "invalid value" --method svd --rank-frac 0
bad lowrank 1 "not below" --method svd --rank-frac 0.9
bad lowrank 1 "one of --params" --method svd --params 0.5 --energy 0.9
bad lowrank 1 "needs --params" --method svd
bad lowrank 1 "needs calibration" --method asvd --params 0.5
bad lowrank 1 "unknown low-rank method" --method pca --params 0.5
bad lowrank 1 "takes no parameters" --method lord:damp=1 --params 0.5
bad lowrank 1 "unknown type" --method svd --params 0.5 --type q9
bad lowrank 1 "cannot open" --method svd --levels "$tmp/none.json"
bad lowrank 2 "does not take" --method svd --params 0.5 --density 0.5
bad drop 1 "calibration text" --blocks 2
bad drop 1 "one of them" --blocks 2 --block-list 1 --calib $X
bad drop 1 "expected block numbers" --block-list 1,x
bad drop 1 "does not exist" --block-list 9
bad drop 1 "at least one must stay" --blocks 5 --calib $X --calib-ctx 128

if "$SQZ" lowrank "$MODEL" -o "$tmp/a.sqzf" --method asvd --params 0.6 --calib $X --calib-ctx 128 --json \
    --no-progress > "$tmp/j" 2> /dev/null && grep -q '"factored":35' "$tmp/j" && grep -q '"mean_rel_err"' "$tmp/j" &&
    "$SQZ" ppl "$tmp/a.sqzf" -f $X --max-tokens 600 --ctx 256 --no-progress > /dev/null 2>&1; then
    echo "ok - lowrank asvd --json reports 35 factored matrices; the sqzf scores"
else
    echo "not ok - lowrank asvd: $(cat "$tmp/j")"
    fails=$((fails + 1))
fi
if "$SQZ" drop "$MODEL" -o "$tmp/d.gguf" --blocks 2 --calib $X --calib-ctx 128 --json --no-progress > "$tmp/j" \
    2> /dev/null && grep -q '"blocks_out":3' "$tmp/j" &&
    "$SQZ" info "$tmp/d.gguf" 2> /dev/null | grep -q '^layers *3' &&
    "$SQZ" ppl "$tmp/d.gguf" -f $X --max-tokens 600 --ctx 256 --no-progress > /dev/null 2>&1; then
    echo "ok - drop --blocks 2 --json: 3 blocks left; the GGUF scores"
else
    echo "not ok - drop: $(cat "$tmp/j")"
    fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
