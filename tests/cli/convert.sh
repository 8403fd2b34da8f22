#!/bin/sh
# CLI: `sqz convert MODEL -o OUT.gguf --type TYPE [--pure] [--json]`. The embedded stories260K
# (llama2.c) converted to f32 GGUF generates the same greedy text as the checkpoint; --json
# prints one object with the result's numbers; sqz-llama-26m to q4_0 is llama.cpp's own
# Q4_0-pure file byte for byte (when ../shared is there); bad input (unknown type, missing output
# folder, no tokenizer, the disk filling up half-way through the stream) fails with one line on
# stderr, nothing on stdout and no file left behind.
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
if ! "$SQZ" --help 2>&1 | grep -q convert; then
    echo "skip - sqz has no convert command yet"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }

M=assets/stories260K/stories260K.bin
$SQZ convert $M -o "$tmp/s.gguf" --type f32 > "$tmp/out" 2> "$tmp/err"
check $? "convert stories260K to f32 GGUF exits 0"
[ -s "$tmp/s.gguf" ] && [ "$(head -c 4 "$tmp/s.gguf")" = GGUF ]
check $? "the output starts with the GGUF magic"
[ ! -s "$tmp/out" ]
check $? "convert without --json prints nothing on stdout"
$SQZ generate $M -p "Once upon a time" -n 64 --temp 0 > "$tmp/a" 2>/dev/null
$SQZ generate "$tmp/s.gguf" -p "Once upon a time" -n 64 --temp 0 > "$tmp/b" 2>/dev/null
[ -s "$tmp/a" ] && cmp -s "$tmp/a" "$tmp/b"
check $? "the f32 GGUF generates the checkpoint's greedy text"

$SQZ convert $M -o "$tmp/q.gguf" --type q8_0 --json > "$tmp/j" 2>/dev/null
check $? "convert --type q8_0 --json exits 0"
python3 -c "
import json, os, sys
d = json.load(open(sys.argv[1]))
assert d['file_bytes'] == os.path.getsize(sys.argv[2]), d
assert d['n_tensors'] == 47 and d['n_fallback'] == 5, d   # the 5 ffn_down are 172 wide: F16
assert 8 < d['bits_per_weight'] < 16, d
assert 0 < d['peak_rss_mib'] < 1024, d" "$tmp/j" "$tmp/q.gguf"
check $? "--json: one object; file_bytes is the file's size, 47 tensors, 5 fallbacks (172-wide ffn_down), peak_rss_mib"

P=$SHARED/models/gguf/sqz-llama-26m-Q4_0-pure.gguf
if [ -f "$P" ] && [ -f "$SHARED/models/sqz-llama-26m/config.json" ]; then
    $SQZ convert "$SHARED/models/sqz-llama-26m" -o "$tmp/q4.gguf" --type q4_0 2>/dev/null
    cmp -s "$tmp/q4.gguf" "$P"
    check $? "sqz-llama-26m --type q4_0 is byte-identical to llama.cpp's Q4_0-pure file"
    $SQZ convert "$SHARED/models/sqz-llama-26m" -o "$tmp/q4p.gguf" --type q4_k_m --pure --json \
        > "$tmp/jp" 2>/dev/null
    python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert d['n_fallback'] == 0 and abs(d['bits_per_weight'] - 4.5) < 0.05, d" "$tmp/jp"
    check $? "--pure q4_k_m: every matrix Q4_K (4.5 bits per weight)"
    rm -f "$tmp/q4.gguf" "$tmp/q4p.gguf"
else
    echo "skip - $P missing: byte comparison with llama.cpp"
fi

# bad_case WHAT EXPECT_IN_MESSAGE OUT ARGS...: exit 1..127, one line on stderr naming OUT,
# nothing on stdout, OUT not created
bad_case() {
    what=$1; want=$2; out=$3; shift 3
    $SQZ convert "$@" > "$tmp/o" 2> "$tmp/e"; rc=$?
    [ $rc -ge 1 ] && [ $rc -lt 128 ] && [ ! -s "$tmp/o" ] && [ "$(wc -l < "$tmp/e")" -eq 1 ] &&
        grep -q "$want" "$tmp/e" && [ ! -e "$out" ]
    check $? "$what: exit $rc, one line: $(cat "$tmp/e")"
}
bad_case "an unknown type" "unknown type" "$tmp/x.gguf" $M -o "$tmp/x.gguf" --type q4_k_x
bad_case "a missing output folder" "does not exist" "$tmp/no/x.gguf" $M -o "$tmp/no/x.gguf" --type f16
# a failure after the header was written: the disk fills up (ulimit -f, 512-byte blocks: the
# 64 KiB take the header, not the 1 MB of f32 weights); SIGXFSZ ignored, so write() fails
mkdir "$tmp/full"
( trap '' XFSZ; ulimit -f 128 && exec $SQZ convert $M -o "$tmp/full/x.gguf" --type f32 ) \
    > "$tmp/o" 2> "$tmp/e"; rc=$?
[ $rc -eq 1 ] && [ ! -s "$tmp/o" ] && [ "$(wc -l < "$tmp/e")" -eq 1 ] && grep -q "write failed" "$tmp/e" &&
    [ -z "$(ls -A "$tmp/full")" ]
check $? "the disk filling up mid-stream: exit $rc, one line, no file and no temporary file: $(cat "$tmp/e")"
mkdir "$tmp/notok" && cp $M "$tmp/notok/m.bin"
bad_case "a model without a tokenizer" "tokenizer" "$tmp/notok/x.gguf" "$tmp/notok/m.bin" \
    -o "$tmp/notok/x.gguf" --type f16
[ "$(ls -A "$tmp/notok")" = m.bin ]
check $? "nothing left beside the model after the failures"
