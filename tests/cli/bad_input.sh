#!/bin/sh
# CLI: `sqz info` on broken models. Each case copies sqz-llama-14m into a temp folder, breaks
# one thing, and checks the contract for bad input: exit status 1..127 (no signal, no abort),
# exactly one line on stderr naming the offending file, nothing on stdout, and no file left
# behind in the model folder. An intact copy must load first, so that the failures are caused
# by the breakage. Needs python3 (stdlib only) for the crafted files.
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
SRC=$SHARED/models/sqz-llama-14m
L2C=$SHARED/models/stories260K

if [ ! -f "$SRC/model.safetensors" ] || [ ! -f "$SRC/config.json" ]; then
    echo "skip - $SRC missing (set SQZ_SHARED): bad-input CLI tests"
    exit 0
fi
if [ ! -x "$SQZ" ]; then
    echo "not ok - no CLI at $SQZ"
    exit 1
fi
have_python=0
command -v python3 > /dev/null 2>&1 && have_python=1

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
n=0

# A fresh model folder in $d. $1: "link" to symlink the weights, "copy" to copy them, anything
# else for none. (Not a $(...) call: n must count up in this shell.)
new_model() {
    n=$((n + 1))
    d=$tmp/case$n
    mkdir "$d" || exit 1
    cp "$SRC/config.json" "$SRC/tokenizer.json" "$d/"
    if [ "$1" = copy ]; then cp "$SRC/model.safetensors" "$d/"
    elif [ "$1" = link ]; then ln -s "$(cd "$SRC" && pwd)/model.safetensors" "$d/model.safetensors"
    fi
}

# check_bad WHAT MODEL_PATH MUST_CONTAIN [DIR]: runs `sqz info MODEL_PATH` and checks the
# bad-input contract; the one stderr line must contain MUST_CONTAIN; DIR (default: the model
# path) must hold the same files afterwards.
check_bad() {
    what=$1; model=$2; want=$3; dir=${4:-$2}
    before=$(ls -A "$dir" 2> /dev/null)
    "$SQZ" info "$model" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    after=$(ls -A "$dir" 2> /dev/null)
    lines=$(wc -l < "$tmp/err" | tr -d ' ')
    why=""
    if [ "$rc" -eq 0 ]; then why="exit status 0"
    elif [ "$rc" -gt 127 ]; then why="exit status $rc (killed by a signal?)"
    elif [ -s "$tmp/out" ]; then why="printed on stdout"
    elif [ "$lines" != 1 ]; then why="$lines lines on stderr (want 1)"
    elif ! grep -qF "$want" "$tmp/err"; then why="stderr does not name $want"
    elif [ "$before" != "$after" ]; then why="files left behind in $dir"
    fi
    if [ -z "$why" ]; then
        echo "ok - $what: $(cat "$tmp/err")"
    else
        echo "not ok - $what: $why"
        sed 's/^/#   stderr: /' "$tmp/err" | head -5
        sed 's/^/#   stdout: /' "$tmp/out" | head -3
    fi
}

# edit_json FILE PYTHON: applies the statement PYTHON to the object `d` loaded from FILE.
edit_json() {
    python3 - "$1" "$2" << 'EOF'
import json, sys
path, stmt = sys.argv[1], sys.argv[2]
with open(path) as f:
    d = json.load(f)
exec(stmt)
with open(path, "w") as f:
    json.dump(d, f, indent=2)
EOF
}

# ---- control: the intact copy loads
new_model link
if "$SQZ" info "$d" > "$tmp/out" 2> "$tmp/err" && [ -s "$tmp/out" ]; then
    echo "ok - an intact copy of sqz-llama-14m loads"
else
    echo "not ok - an intact copy of sqz-llama-14m loads"
    sed 's/^/#   stderr: /' "$tmp/err" | head -5
fi

# ---- weights
new_model none
head -c 100000 "$SRC/model.safetensors" > "$d/model.safetensors"
check_bad "truncated model.safetensors" "$d" "$d/model.safetensors"

new_model none
head -c 5 "$SRC/model.safetensors" > "$d/model.safetensors"
check_bad "model.safetensors of 5 bytes" "$d" "$d/model.safetensors"

new_model none
: > "$d/model.safetensors"
check_bad "empty model.safetensors" "$d" "$d/model.safetensors"

new_model none
# header length 0x7fffffffffffffff, then the rest of the real file
{ printf '\377\377\377\377\377\377\377\177'; tail -c +9 "$SRC/model.safetensors"; } \
    > "$d/model.safetensors"
check_bad "safetensors header claiming an absurd size" "$d" "$d/model.safetensors"

if [ $have_python = 1 ]; then
    new_model none
    python3 - "$SRC/model.safetensors" "$d/model.safetensors" << 'EOF'
# Gives the second of two tensors with the same byte count the first one's data_offsets.
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    data = f.read()
seen = {}
for name, t in sorted(h.items()):
    if name == "__metadata__":
        continue
    size = t["data_offsets"][1] - t["data_offsets"][0]
    if size in seen:
        t["data_offsets"] = list(h[seen[size]]["data_offsets"])
        break
    seen[size] = name
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb + data)
EOF
    check_bad "safetensors with overlapping tensors" "$d" "$d/model.safetensors"

    new_model none
    python3 - "$SRC/model.safetensors" "$d/model.safetensors" << 'EOF'
# The header is not JSON: its first byte is replaced.
import struct, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    b = bytearray(f.read())
b[8] = ord("x")
open(dst, "wb").write(b)
EOF
    check_bad "safetensors header that is not JSON" "$d" "$d/model.safetensors"

    new_model none
    python3 - "$SRC/model.safetensors" "$d/model.safetensors" << 'EOF'
# A weight stored as I64: a dtype sqz does not compute with (same byte count, 1/4 the elements).
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    data = f.read()
t = h["model.layers.0.self_attn.q_proj.weight"]
t["dtype"] = "I64"
t["shape"] = [t["shape"][0] // 4, t["shape"][1]]
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb + data)
EOF
    check_bad "a weight with dtype I64" "$d" "$d/model.safetensors"
else
    echo "skip - python3 missing: crafted safetensors cases"
fi

new_model none
check_bad "missing model.safetensors" "$d" "$d"

# ---- config.json
if [ $have_python = 1 ]; then
    new_model link
    edit_json "$d/config.json" 'del d["hidden_size"]'
    check_bad "config.json without hidden_size" "$d" "$d/config.json"

    new_model link
    edit_json "$d/config.json" 'd["hidden_size"] = 512'
    # the disagreement may be reported against either file of the folder
    check_bad "config.json hidden_size 512 disagreeing with the weights" "$d" "$d/"

    new_model link
    edit_json "$d/config.json" 'd["architectures"] = ["GPT2LMHeadModel"]; d["model_type"] = "gpt2"'
    check_bad "config.json with architecture GPT2LMHeadModel" "$d" "$d/config.json"

    new_model link
    edit_json "$d/config.json" 'd["num_key_value_heads"] = 4'
    check_bad "config.json whose kv heads do not divide the heads" "$d" "$d/config.json"

    new_model link
    edit_json "$d/config.json" 'd["num_hidden_layers"] = "8"'
    check_bad "config.json with a string num_hidden_layers" "$d" "$d/config.json"

    new_model link
    edit_json "$d/config.json" 'd["num_hidden_layers"] = 9'
    # a missing tensor: the folder or its model.safetensors
    check_bad "config.json with more layers than the weights" "$d" "$d"
else
    echo "skip - python3 missing: config.json cases"
fi

new_model link
printf '{"architectures": ["LlamaForCausalLM"], "hidden_size": ' > "$d/config.json"
check_bad "config.json that is not JSON" "$d" "$d/config.json"

new_model link
rm "$d/config.json"
check_bad "missing config.json" "$d" "$d"

# ---- tokenizer.json
new_model link
printf 'this is not JSON {' > "$d/tokenizer.json"
check_bad "tokenizer.json that is not JSON" "$d" "$d/tokenizer.json"

new_model link
printf '{"hello": [1, 2, 3]}\n' > "$d/tokenizer.json"
check_bad "tokenizer.json that is JSON but not a tokenizer" "$d" "$d/tokenizer.json"

new_model link
: > "$d/tokenizer.json"
check_bad "empty tokenizer.json" "$d" "$d/tokenizer.json"

# ---- paths
check_bad "a model path that does not exist" "$tmp/no-such-model" "$tmp/no-such-model" "$tmp"

# ---- llama2.c checkpoint
if [ -f "$L2C/stories260K.bin" ] && [ -f "$L2C/tok512.bin" ]; then
    n=$((n + 1)); d=$tmp/case$n; mkdir "$d"
    head -c 1000 "$L2C/stories260K.bin" > "$d/stories260K.bin"
    cp "$L2C/tok512.bin" "$d/tok512.bin"; cp "$L2C/tok512.bin" "$d/tokenizer.bin"
    check_bad "truncated llama2.c checkpoint" "$d/stories260K.bin" "$d/stories260K.bin" "$d"

    n=$((n + 1)); d=$tmp/case$n; mkdir "$d"
    head -c 20 "$L2C/stories260K.bin" > "$d/stories260K.bin"
    cp "$L2C/tok512.bin" "$d/tok512.bin"; cp "$L2C/tok512.bin" "$d/tokenizer.bin"
    check_bad "llama2.c checkpoint shorter than its header" "$d/stories260K.bin" \
        "$d/stories260K.bin" "$d"
else
    echo "skip - $L2C missing: llama2.c cases"
fi

# ---- sqzf (sqz's container, docs/sqzf.md): loaded by magic, whatever the name
for c in version_2 type_5000 truncated_data; do
    n=$((n + 1)); d=$tmp/case$n; mkdir "$d"
    cp "fuzz/corpus/gguf/sqzf-bad-$c.sqzf" "$d/model" || continue
    check_bad "sqzf file: $c" "$d/model" "$d/model" "$d"
done

# nothing may be left beside the temp folder's cases either
extra=""
for f in "$tmp"/* "$tmp"/.[!.]*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    case ${f##*/} in case[0-9]*|out|err) ;; *) extra="$extra ${f##*/}" ;; esac
done
if [ -z "$extra" ]; then echo "ok - no stray files in the temp folder"
else echo "not ok - stray files in the temp folder: $extra"; fi
