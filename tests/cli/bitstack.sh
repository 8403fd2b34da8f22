#!/bin/sh
# CLI: `sqz bitstack` and --memory (issue 18) on sqz-llama-14m from ../shared (skipped without
# it), with 1024 calibration tokens of calib-1m.txt: bad parameters are one line on stderr with
# exit status 2 (usage) or 1 (the library's error) and no output file; the stack reports its
# blocks; `sqz ppl` at --memory sizes (every unit form) never gets worse with more memory and
# stays within the budget; `sqz generate` and `sqz convert` take --memory, and the converted
# GGUF scores as the stack at that size.
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
MODEL=$SHARED/models/sqz-llama-14m
CALIB=$SHARED/data/calib/calib-1m.txt
X=$SHARED/data/domains/sotu.test.txt
if [ ! -x "$SQZ" ]; then
    echo "not ok - no CLI at $SQZ"
    exit 1
fi
if [ ! -d "$MODEL" ] || [ ! -f "$CALIB" ] || [ ! -f "$X" ]; then
    echo "skip - no sqz-llama-14m or calibration text under $SHARED"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok - $*"; }
notok() { echo "not ok - $*"; fails=$((fails + 1)); }

# bad WANT_STATUS MUST_CONTAIN COMMAND ARGS... (one stderr line, nothing on stdout, no $tmp/out)
bad() {
    want=$1 msg=$2
    shift 2
    "$SQZ" "$@" --no-progress > "$tmp/stdout" 2> "$tmp/stderr"
    st=$?
    lines=$(wc -l < "$tmp/stderr")
    if [ "$st" -eq "$want" ] && [ "$lines" -eq 1 ] && grep -q -- "$msg" "$tmp/stderr" && [ ! -s "$tmp/stdout" ] &&
        [ ! -e "$tmp/out" ]; then
        ok "$*: $(cat "$tmp/stderr")"
    else
        notok "$*: status $st (want $want), $lines stderr lines: $(cat "$tmp/stderr")"
    fi
}

bad 1 "calibration text" bitstack "$MODEL" -o "$tmp/out"
bad 2 "invalid value" bitstack "$MODEL" -o "$tmp/out" --calib "$CALIB" --rank 0
bad 2 "invalid value" bitstack "$MODEL" -o "$tmp/out" --calib "$CALIB" --iters 2000
bad 1 "less than one window" bitstack "$MODEL" -o "$tmp/out" --calib "$CALIB" --calib-tokens 100
bad 1 "not a size" ppl "$MODEL" -f "$X" --memory 12XB
bad 1 "not a size" ppl "$MODEL" -f "$X" --memory -3MiB
bad 1 "not a BitStack" ppl "$MODEL" -f "$X" --memory 12MiB

S=$tmp/s.sqzf
if "$SQZ" bitstack "$MODEL" -o "$S" --calib "$CALIB" --calib-tokens 1024 --calib-ctx 256 --rank 2 --iters 3 \
    --sort-windows 1 --json --no-progress > "$tmp/j" 2> "$tmp/e" && grep -q '"blocks":168' "$tmp/j" &&
    grep -q '"rank":2' "$tmp/j" && [ -s "$S" ] && ! ls "$tmp" | grep -q '\.tmp'; then
    ok "bitstack --json: 56 matrices x 3 blocks of rank 2 written"
else
    notok "bitstack: $(cat "$tmp/j" "$tmp/e")"
fi
bad 1 "below the smallest size" ppl "$S" -f "$X" --memory 2MiB

# ppl at growing sizes from the smallest (every first block, about 3.6 MB): every unit form, never
# worse with more memory, within the budget
prev=1e30
mono=1
for m in 3600KB 4MiB 4500000 5MiB 6MB 100MB; do
    if ! "$SQZ" ppl "$S" -f "$X" --ctx 256 --max-tokens 513 --memory $m --json --no-progress > "$tmp/p" 2> /dev/null; then
        notok "ppl --memory $m failed"
        mono=0
        continue
    fi
    p=$(sed 's/.*"ppl":\([0-9.e+-]*\).*/\1/' "$tmp/p")
    b=$(sed 's/.*"weight_bytes":\([0-9]*\).*/\1/' "$tmp/p")
    echo "# --memory $m: weight_bytes $b, ppl $p"
    lim=$(echo "$m" | awk '{ v = $1 + 0; u = $1; sub(/^[0-9.]*/, "", u);
        f = u == "MiB" ? 1048576 : u == "MB" ? 1e6 : u == "KB" ? 1e3 : 1; printf "%.0f", v * f }')
    if awk -v p="$p" -v q="$prev" -v b="$b" -v l="$lim" 'BEGIN { exit !(p <= q * 1.0001 && b <= l) }'; then :; else
        mono=0
        echo "# not monotone or over budget at $m: ppl $p after $prev, $b bytes for $lim"
    fi
    prev=$p
done
[ "$mono" -eq 1 ] && ok "ppl never rises with --memory, weight bytes within each budget" ||
    notok "ppl over --memory sizes"
p5=$("$SQZ" ppl "$S" -f "$X" --ctx 256 --max-tokens 513 --memory 5MiB --json --no-progress 2> /dev/null |
    sed 's/.*"ppl":\([0-9.e+-]*\).*/\1/')

if "$SQZ" generate "$S" -p "The nation" -n 8 --temp 0 --memory 4MiB --no-progress > "$tmp/g" 2> "$tmp/e" &&
    [ -s "$tmp/g" ] && grep -q "BitStack" "$tmp/e"; then
    ok "generate --memory 4MiB: $(head -c 60 "$tmp/g" | tr '\n' ' ')"
else
    notok "generate --memory: $(cat "$tmp/e")"
fi
if "$SQZ" convert "$S" -o "$tmp/c.gguf" --type f32 --memory 5MiB --no-progress > /dev/null 2> "$tmp/e" &&
    "$SQZ" info "$tmp/c.gguf" 2> /dev/null | grep -q "f32" &&
    pc=$("$SQZ" ppl "$tmp/c.gguf" -f "$X" --ctx 256 --max-tokens 513 --json --no-progress 2> /dev/null |
        sed 's/.*"ppl":\([0-9.e+-]*\).*/\1/') &&
    awk -v a="$pc" -v b="$p5" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-3 * b) }'; then
    ok "convert --memory 5MiB --type f32: the GGUF scores as the stack at 5MiB ($pc vs $p5)"
else
    notok "convert --memory: ppl ${pc:-?} vs ${p5:-?}: $(cat "$tmp/e")"
fi
[ "$fails" -eq 0 ]
