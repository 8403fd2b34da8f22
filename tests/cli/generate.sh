#!/bin/sh
# CLI: greedy generation of stories260K reproduces llama2.c's run.c byte for byte; the embedded
# copy (assets/, found without ../shared, tokenizer found beside it) gives the same text;
# --json prints one JSON object; sampling with a seed is repeatable.
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }
strip_nl() { printf '%s' "$(cat "$1")"; } # drops trailing newlines

S=$SHARED/models/stories260K
if [ -f "$S/stories260K.bin" ]; then
    $SQZ generate "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -p "" -n 256 --temp 0 \
        > "$tmp/out.txt" 2> "$tmp/err.txt"
    check $? "generate stories260K exits 0"
    strip_nl "$tmp/out.txt" > "$tmp/a"; strip_nl "$S/greedy_t0_n256.txt" > "$tmp/b"
    cmp -s "$tmp/a" "$tmp/b"
    check $? "greedy 256 tokens from BOS equal llama2.c's greedy_t0_n256.txt byte for byte"
    [ "$(wc -l < "$tmp/err.txt")" -le 1 ]
    check $? "generate logs at most one line on stderr"
else
    echo "skip - $S missing"
fi

M=assets/stories260K/stories260K.bin
$SQZ generate $M -p "" -n 256 --temp 0 > "$tmp/emb.txt" 2>/dev/null
check $? "embedded stories260K generates with its tokenizer found beside it"
if [ -f "$S/greedy_t0_n256.txt" ]; then
    strip_nl "$tmp/emb.txt" > "$tmp/c"
    cmp -s "$tmp/b" "$tmp/c"
    check $? "embedded copy gives the reference text too"
fi

$SQZ generate $M -p "Once upon a time" -n 40 --temp 0.9 --top-p 0.9 --seed 7 > "$tmp/s1" 2>/dev/null
$SQZ generate $M -p "Once upon a time" -n 40 --temp 0.9 --top-p 0.9 --seed 7 > "$tmp/s2" 2>/dev/null
cmp -s "$tmp/s1" "$tmp/s2" && [ -s "$tmp/s1" ]
check $? "sampling with the same seed gives the same text"
$SQZ generate $M -p "Once upon a time" -n 40 --temp 0.9 --top-p 0.9 --seed 8 > "$tmp/s3" 2>/dev/null
! cmp -s "$tmp/s1" "$tmp/s3"
check $? "another seed gives another text"

$SQZ generate $M -p "Once upon a time" -n 20 --temp 0 --json > "$tmp/j" 2>/dev/null
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['generated_tokens']==20 and isinstance(d['text'],str) and d['text']" "$tmp/j"
check $? "generate --json prints one object with text and counts"

$SQZ generate $M -p "x" -n -3 > "$tmp/o" 2> "$tmp/e"; rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && [ ! -s "$tmp/o" ] && [ "$(wc -l < "$tmp/e")" -eq 1 ]
check $? "a negative -n is a one-line usage error"

$SQZ ppl $M -f assets/tinystories-valid-slice.txt --ctx 256 --json > "$tmp/p" 2>/dev/null
python3 -c "
import json,sys; d=json.load(open(sys.argv[1]))
assert all(k in d for k in ('ppl','ppl_stderr','tokens','seconds'))
assert 1 < d['ppl'] < 20 and d['tokens'] > 1000, d" "$tmp/p"
check $? "ppl --json on the embedded model: keys ppl, ppl_stderr, tokens, seconds; plausible value"
