#!/bin/sh
# CLI: sqz info lists a GGUF file's metadata and every tensor (name, shape, type, bytes) as
# llama.cpp wrote them; the same listing for an HF folder and a llama2.c checkpoint.
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }

G=$SHARED/models/gguf/sqz-llama-26m-Q4_K_M-imatrix.gguf
if [ -f "$G" ]; then
    $SQZ info "$G" --json > "$tmp/g.json" 2> "$tmp/err"
    check $? "info --json on llama.cpp's Q4_K_M file"
    python3 - "$tmp/g.json" "$G" <<'PY'
import json, struct, sys
d = json.load(open(sys.argv[1]))
# an independent reading of the file's tensor table (stdlib only)
b = open(sys.argv[2], 'rb').read()
o = 4
ver, nt, nkv = struct.unpack_from('<IQQ', b, o); o += 20
def s():
    global o
    n, = struct.unpack_from('<Q', b, o); o += 8; v = b[o:o+n]; o += n; return v
def skip(t):
    global o
    if t == 8: s(); return
    if t == 9:
        et, n = struct.unpack_from('<IQ', b, o); o += 12
        for _ in range(n): skip(et)
        return
    o += {0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}[t]
for _ in range(nkv):
    s(); t, = struct.unpack_from('<I', b, o); o += 4; skip(t)
types = {0:'f32', 12:'q4_k', 14:'q6_k'}
want = {}
for _ in range(nt):
    name = s().decode(); nd, = struct.unpack_from('<I', b, o); o += 4
    ne = struct.unpack_from('<%dQ' % nd, b, o); o += 8 * nd
    ty, off = struct.unpack_from('<IQ', b, o); o += 12
    want[name] = (list(ne), types[ty])
got = {t['name']: (t['shape'], t['type']) for t in d['tensors']}
assert got == want, (set(got.items()) ^ set((k, (tuple(v[0]), v[1])) for k, v in want.items()))
assert len(d['metadata']) == nkv and d['metadata']['general.file_type'] == '15'
assert d['metadata']['tokenizer.ggml.add_bos_token'] == 'false'
PY
    check $? "every tensor's name, shape and type, and every metadata key, as in the file"
    $SQZ info "$G" > "$tmp/g.txt" 2>&1
    grep -q "blk.7.ffn_down.weight .*q6_k" "$tmp/g.txt" && grep -q "general.file_type *15" "$tmp/g.txt"
    check $? "the text listing shows tensors with types and metadata"
else
    echo "skip - $G missing"
fi

$SQZ info assets/stories260K/stories260K.bin --json > "$tmp/s.json" 2>/dev/null
python3 -c "
import json,sys; d=json.load(open(sys.argv[1]))
assert len(d['tensors']) == 1 + 5 * 9 + 1 and d['metadata'] == {}
assert sum(t['bytes'] for t in d['tensors']) == d['weight_bytes']" "$tmp/s.json"
check $? "llama2.c checkpoint: 47 tensors whose bytes add up to the weight bytes"
