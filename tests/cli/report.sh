#!/bin/sh
# CLI: sqz report. Real --json results made here on the embedded stories260K (ppl, a gptq and
# two convert runs scored with KL, a KV policy, kvbench, and a speed file in
# bench/vs_llamacpp.py's format) become one HTML file that headless Chromium renders: the DOM
# has every plot's <svg> and every table, each point a <title>, and a screenshot is not blank.
# Inputs that are not valid JSON, or not sqz results, fail with one clear line and leave no file.
# Chromium comes from scripts/install-deps.sh; without it this test fails (it never skips).
SQZ=${SQZ:-build/sqz}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }
M=assets/stories260K/stories260K.bin
X=assets/tinystories-valid-slice.txt
C=assets/tinystories-calib-slice.txt
# one thread: the model is tiny, and spinning threads on a busy machine cost more than they give
R="-t 1 --no-progress --json"
P="--ctx 256 --max-tokens 2048"

$SQZ ppl $M -f $X $P $R > "$tmp/base.json" &&
$SQZ quantize $M -o "$tmp/gptq.gguf" --type q4_0 --method gptq --calib $C --calib-tokens 512 \
    --calib-ctx 256 $R > "$tmp/gptq.q.json" &&
$SQZ convert $M -o "$tmp/rtn.gguf" --type q4_0 $R > "$tmp/rtn.c.json" &&
$SQZ convert $M -o "$tmp/q8.gguf" --type q8_0 $R > "$tmp/q8.c.json" &&
for m in gptq rtn q8; do
    $SQZ ppl "$tmp/$m.gguf" -f $X $P --kld-base $M --kld-cache "$tmp/base.kld" $R > "$tmp/$m.ppl.json" || exit 1
done &&
$SQZ ppl "$tmp/gptq.gguf" -f $X $P --kld-base $M --kld-cache "$tmp/base.kld" --kv q8 $R > "$tmp/gptq-kv.ppl.json" &&
$SQZ kvbench $M -f $X --ctx 256 --max-tokens 1024 --kv f16 --kv q8 --kv q4 --no-decode $R > "$tmp/kv.json"
check $? "the results to report on (ppl, quantize, convert, kvbench --json)"
# the numbers are an example of the format, not a measurement
cat > "$tmp/speed.json" <<'EOF'
{"threads": 2, "files": {"m-q4_0.gguf": {"sqz": {"prefill_tps": 900.5, "decode_tps": 61.2},
 "llama_cpp": {"prefill_tps": 850.1, "decode_tps": 55.3}}}}
EOF

python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["file_bytes"] == 1056540 and abs(d["bits_per_weight"] - 32) < 1e-9 and d["n_params"] > 0, d
assert d["model"].endswith("stories260K.bin"), d' "$tmp/base.json"
check $? "ppl --json has the model's file bytes, parameters and bits per weight"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["kv"] == "q8" and d["kv_positions"] == 256 and d["kv_bytes"] > 0 and d["kv_ratio_vs_f16"] > 1, d
' "$tmp/gptq-kv.ppl.json"
check $? "ppl --kv --json has the cache bytes after a window and the ratio to f16"

$SQZ report "$tmp"/*.json -o "$tmp/report.html" > "$tmp/table" 2> "$tmp/e"
check $? "report writes report.html ($(cat "$tmp/e"))"
grep -q "^gptq q4_0  *f32 " "$tmp/table" && grep -q "^gptq q4_0  *q8 " "$tmp/table" && grep -q "^stories260K.bin  *f32 " "$tmp/table"
check $? "report prints the models' table, labelled by the runs that made them"
# self-contained: nothing fetched (the only URL is SVG's namespace name), no script
! grep -v 'xmlns="http://www.w3.org/2000/svg"' "$tmp/report.html" | grep -qiE '<script|src=|href=|url\(|https?:'
check $? "the page loads nothing and runs no script"

command -v chromium > /dev/null
check $? "chromium is installed (scripts/install-deps.sh)"
prof=$(mktemp -d)
CHROME="timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --user-data-dir=$prof"
$CHROME --dump-dom "file://$tmp/report.html" > "$tmp/dom" 2> /dev/null
missing=""
for id in plot-ppl plot-kld plot-kv plot-speed-decode plot-speed-prefill; do
    grep -q "<svg[^>]*id=\"$id\"" "$tmp/dom" || missing="$missing $id"
done
for id in table-models table-kv table-speed; do
    grep -q "<table id=\"$id\"" "$tmp/dom" || missing="$missing $id"
done
[ -s "$tmp/dom" ] && [ -z "$missing" ]
check $? "the rendered DOM has every plot's svg and every table${missing:+ (missing:$missing)}"
# each point / bar has its hover title: 5 models + 4 with KL + 3 KV policies (kvbench) + 1 (ppl --kv) + 2x2 bars
[ "$(grep -o '<g class="\(pt\|bar\)"><title>' "$tmp/dom" | wc -l)" -eq 17 ]
check $? "every point and bar has a <title> ($(grep -o '<g class="\(pt\|bar\)"><title>' "$tmp/dom" | wc -l))"
grep -q 'class="ring"' "$tmp/dom"
check $? "the Pareto front is marked"

$CHROME --window-size=1100,2400 --screenshot="$tmp/shot.png" "file://$tmp/report.html" > /dev/null 2>&1
# the PNG decoded with the standard library: the colours of its pixels (a blank page has one)
python3 - "$tmp/shot.png" > "$tmp/colours" <<'EOF'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat = 8, b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
assert depth == 8 and ctype in (2, 6), (depth, ctype)
bpp = 3 if ctype == 2 else 4
raw, stride, prev, colours, ink = zlib.decompress(idat), w * bpp, bytearray(w * bpp), set(), 0
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        px = bytes(line[x:x + 3])
        colours.add(px)
        ink += px != b"\xff\xff\xff"
    prev = line
print(len(colours), ink / (w * h))
EOF
read n_colours ink < "$tmp/colours"
[ "${n_colours:-0}" -ge 16 ] && python3 -c "import sys; sys.exit(not float(sys.argv[1]) > 0.02)" "${ink:-0}"
check $? "the screenshot is not blank ($n_colours colours, $ink of the pixels not white)"
rm -rf "$prof"

# bad inputs: one line naming the file, exit 1, no output and no temporary left
bad() { # WHAT WANT FILE...
    what=$1; want=$2; shift 2
    rm -f "$tmp/out.html"
    $SQZ report "$@" -o "$tmp/out.html" > "$tmp/o" 2> "$tmp/e"; rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l < "$tmp/e")" -eq 1 ] && grep -qF -- "$want" "$tmp/e" &&
        [ ! -e "$tmp/out.html" ] && [ -z "$(ls "$tmp" | grep 'out.html.tmp')" ]
    check $? "$what: exit $rc, $(cat "$tmp/e")"
}
printf '{"ppl": 3.5, "model": "m"\n' > "$tmp/broken.json"
bad "a truncated JSON file" "broken.json: not valid JSON (line" "$tmp/base.json" "$tmp/broken.json"
echo '{"loss": 1}' > "$tmp/other.json"
bad "JSON that is no sqz result" "other.json: value 1 is not a result sqz report reads" "$tmp/other.json"
bad "a file that does not exist" "no-such.json: cannot open" "$tmp/no-such.json"
: > "$tmp/empty.json"
bad "an empty file" "empty.json: empty" "$tmp/empty.json"
echo "keep" > "$tmp/keep.html"
$SQZ report "$tmp/broken.json" -o "$tmp/keep.html" > /dev/null 2>&1
[ $? -eq 1 ] && [ "$(cat "$tmp/keep.html")" = keep ]
check $? "a failed report leaves an existing output as it was"
$SQZ report "$tmp/base.json" --tokenizer x -o "$tmp/out.html" > /dev/null 2> "$tmp/e"
[ $? -eq 2 ] && grep -q "report does not take --tokenizer" "$tmp/e"
check $? "report refuses a model's options"
$SQZ --help | grep -q "^  report RESULT.json"
check $? "sqz --help lists report"
