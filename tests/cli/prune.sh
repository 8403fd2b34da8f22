#!/bin/sh
# CLI: `sqz prune` on the embedded model (assets/stories260K): bad parameters are one line on
# stderr, exit status 2 (usage) or 1 (the library's error), nothing on stdout and no output file;
# a good run writes a file that `sqz ppl` scores, and --json reports the pruned fraction.
SQZ=${SQZ:-build/sqz}
MODEL=assets/stories260K/stories260K.bin
if [ ! -x "$SQZ" ]; then
    echo "not ok - no CLI at $SQZ"
    exit 1
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0

# bad WANT_STATUS MUST_CONTAIN ARGS...
bad() {
    want=$1 msg=$2
    shift 2
    "$SQZ" prune "$MODEL" -o "$tmp/out.gguf" --no-progress "$@" > "$tmp/stdout" 2> "$tmp/stderr"
    st=$?
    lines=$(wc -l < "$tmp/stderr")
    if [ "$st" -eq "$want" ] && [ "$lines" -eq 1 ] && grep -q -- "$msg" "$tmp/stderr" && [ ! -s "$tmp/stdout" ] &&
        [ ! -e "$tmp/out.gguf" ]; then
        echo "ok - prune $*: $(cat "$tmp/stderr")"
    else
        echo "not ok - prune $*: status $st (want $want), $lines stderr lines: $(cat "$tmp/stderr")"
        fails=$((fails + 1))
    fi
}

bad 2 "invalid value" --method magnitude --density 1.5
bad 2 "invalid value" --method magnitude --density 0
bad 1 "M does not divide" --method magnitude --nm 3:5
bad 1 "expected N:M" --method magnitude --nm 2-4
bad 1 "not both" --method magnitude --nm 2:4 --density 0.5
bad 1 "needs --density" --method magnitude
bad 1 "needs calibration" --method wanda --density 0.5
bad 1 "unknown pruning method" --method obs --density 0.5
bad 1 "cannot open" --method magnitude --levels "$tmp/none.json"
bad 2 "does not take" --method magnitude --density 0.5 --act-order

if "$SQZ" prune "$MODEL" -o "$tmp/m.sqzf" --method magnitude --density 0.5 --type sp8 --json --no-progress \
    > "$tmp/j" 2> /dev/null && grep -q '"pruned_frac":0.5' "$tmp/j" &&
    "$SQZ" ppl "$tmp/m.sqzf" -f assets/tinystories-valid-slice.txt --max-tokens 600 --ctx 256 --no-progress \
    > /dev/null 2>&1; then
    echo "ok - prune --type sp8 --json reports half the block weights removed; the sqzf scores"
else
    echo "not ok - prune --type sp8: $(cat "$tmp/j")"
    fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
