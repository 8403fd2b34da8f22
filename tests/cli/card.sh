#!/bin/sh
# CLI: model cards. A GGUF file sqz quantize, finetune, prune, drop or merge writes says how it was made in the
# general.* keys llama.cpp shows (general.description with the method, its calibration text and
# a measured perplexity; general.quantized_by; general.base_model.*; general.tags), the existing
# keys kept; a Hugging Face folder (merge, finetune) gets a README.md with YAML front matter
# (base_model, library_name: sqz, tags) and the recipe, written with the rest: a failed run
# leaves no folder and no card. plain `sqz convert` stays byte-identical to llama-quantize (no
# card: tests/cli/convert.sh compares the bytes).
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }
M=assets/stories260K/stories260K.bin
X=assets/tinystories-valid-slice.txt
C=assets/tinystories-calib-slice.txt
R="-t 1 --no-progress"

# key VALUE-PATTERN: a line of sqz info's metadata
has() { grep -qE "^  $1 +$2" "$tmp/info"; }

$SQZ quantize $M -o "$tmp/q.gguf" --type q4_0 --method gptq --calib $C --calib-tokens 512 --calib-ctx 256 $R 2> /dev/null &&
    $SQZ info "$tmp/q.gguf" > "$tmp/info"
check $? "quantize writes a GGUF file sqz info reads"
has general.description '"gptq, type q4_0; from assets/stories260K/stories...' &&
    has general.quantized_by '"sqz [0-9.]+"' && has general.base_model.count 1 &&
    has general.base_model.0.name '"stories260K.bin"' && has general.tags '\[2 x str\] "sqz" "gptq"'
check $? "its general.* keys: description, quantized_by, base_model, tags"
has general.architecture '"llama"' && has general.name '"stories260K"' && has general.file_type 2 &&
    has tokenizer.ggml.model '"llama"'
check $? "the keys it had are kept"
# the whole description (info cuts long values): the calibration text and its tokens
python3 - "$tmp/q.gguf" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
key = b"general.description"
i = b.index(key) + len(key)
assert struct.unpack("<I", b[i:i + 4])[0] == 8  # a string
n = struct.unpack("<Q", b[i + 4:i + 12])[0]
d = b[i + 12:i + 12 + n].decode()
assert "calibrated on tinystories-calib-slice.txt (512 tokens)" in d and "sqz " in d, d
EOF
check $? "general.description names the calibration text and its tokens"

$SQZ finetune $M -f $C --eval-file $X --eval-tokens 1024 -o "$tmp/ft.gguf" --steps 2 --batch 2 --ctx 64 $R \
    > /dev/null 2>&1 && $SQZ info "$tmp/ft.gguf" > "$tmp/info"
check $? "finetune writes a GGUF file"
python3 - "$tmp/ft.gguf" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
key = b"general.description"
i = b.index(key) + len(key)
n = struct.unpack("<Q", b[i + 4:i + 12])[0]
d = b[i + 12:i + 12 + n].decode()
assert d.startswith("finetune, 2 steps of 2 windows x 64 tokens") and "perplexity " in d \
    and "on tinystories-valid-slice.txt" in d, d
EOF
check $? "finetune's general.description: the recipe and the held-out perplexity it measured"

$SQZ prune $M -o "$tmp/p.gguf" --method magnitude --density 0.5 $R 2> /dev/null &&
    $SQZ info "$tmp/p.gguf" > "$tmp/info" && has general.description '"prune:magnitude, density 0.5; from' &&
    has general.tags '\[2 x str\] "sqz" "prune"' &&
    $SQZ drop $M -o "$tmp/d.gguf" --block-list 1,3 $R 2> /dev/null &&
    $SQZ info "$tmp/d.gguf" > "$tmp/info" && has general.description '"drop:blocks, 2 of 5 blocks dropped: 1 3;'
check $? "prune and drop say what they removed (general.description, general.tags)"

$SQZ convert $M -o "$tmp/c.gguf" --type q8_0 $R 2> /dev/null && $SQZ info "$tmp/c.gguf" > "$tmp/info"
! has general.description
check $? "plain convert adds no card (llama-quantize's keys, byte for byte)"

# Hugging Face folders: merge (and finetune) from the shared models
B=$SHARED/models/sqz-llama-14m
F=$SHARED/models/merge
if [ -f "$F/ft-bible/config.json" ] && [ -f "$B/config.json" ]; then
    cat > "$tmp/ties.yml" <<YAML
models:
  - model: $F/ft-bible
    parameters: {weight: 0.5, density: 0.5}
  - model: $F/ft-pydoc
    parameters: {weight: 0.5, density: 0.5}
merge_method: ties
base_model: $B
YAML
    $SQZ merge "$tmp/ties.yml" -o "$tmp/merged" $R > /dev/null 2>&1
    card=$tmp/merged/README.md
    [ -f "$card" ] && [ "$(head -1 "$card")" = "---" ] && grep -qx "base_model: \"$B\"" "$card" &&
        grep -qx "library_name: sqz" "$card" && grep -qx -- '- sqz' "$card" && grep -qx -- '- "ties"' "$card" &&
        grep -qF '| method | `ties` |' "$card" && grep -qF '| parameters | models merged: ft-bible, ft-pydoc |' "$card" &&
        grep -qE '^\| sqz version \| [0-9.]+ \|$' "$card"
    check $? "merge's folder has README.md: front matter (base_model, library_name, tags), method, parameters, version"
    $SQZ finetune "$B" -f "$F/bible.train.txt" --eval-file "$F/bible.test.txt" --eval-tokens 256 \
        -o "$tmp/ft" --steps 1 --batch 1 --ctx 32 $R > /dev/null 2>&1
    card=$tmp/ft/README.md
    [ -f "$card" ] && grep -qx "base_model: \"$B\"" "$card" && grep -qF '| method | `finetune` |' "$card" &&
        grep -qF "| calibration / training text | \`$F/bible.train.txt\`" "$card" &&
        grep -qE "^\| perplexity \| [0-9.]+ on \`$F/bible.test.txt\` \|$" "$card"
    check $? "finetune's folder has README.md with the training text and the measured perplexity"
    # a failed run leaves nothing (the card is written into the temporary folder with the
    # weights, and only a complete folder is renamed into place)
    sed "s#ft-pydoc#no-such-model#" "$tmp/ties.yml" > "$tmp/bad.yml"
    $SQZ merge "$tmp/bad.yml" -o "$tmp/bad" $R > /dev/null 2>&1
    [ $? -ne 0 ] && [ ! -e "$tmp/bad" ] && [ -z "$(ls -d "$tmp"/bad.tmp.* 2> /dev/null)" ]
    check $? "a failed merge leaves no folder and no card"
else
    echo "skip - $F missing: Hugging Face folders' model cards"
fi
