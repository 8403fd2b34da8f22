#!/bin/sh
# CLI: `sqz drop` of attention / MLP sub-blocks on the embedded model (assets/stories260K, 5
# layers): bad parameters are one line on stderr, exit status 2 (usage) or 1, nothing on stdout
# and no output file; --attn / --mlp / --sub / --which write an sqzf that info, ppl (with a
# compressed KV cache too), generate (one thread and the decode team), convert and quantize run,
# and --json lists every sub-block's influence and what was dropped.
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
export OMP_WAIT_POLICY=passive

# bad WANT_STATUS MUST_CONTAIN ARGS...
bad() {
    want=$1 msg=$2
    shift 2
    "$SQZ" drop "$MODEL" -o "$tmp/out" --no-progress "$@" > "$tmp/stdout" 2> "$tmp/stderr"
    st=$?
    lines=$(wc -l < "$tmp/stderr")
    if [ "$st" -eq "$want" ] && [ "$lines" -eq 1 ] && grep -q -- "$msg" "$tmp/stderr" && [ ! -s "$tmp/stdout" ] &&
        [ ! -e "$tmp/out" ]; then
        echo "ok - drop $*: $(cat "$tmp/stderr")"
    else
        echo "not ok - drop $*: status $st (want $want), $lines stderr lines: $(cat "$tmp/stderr")"
        fails=$((fails + 1))
    fi
}
# check DESCRIPTION COMMAND...: ok when the command succeeds
check() {
    what=$1
    shift
    if "$@" > "$tmp/check.out" 2> "$tmp/check.err"; then
        echo "ok - $what"
    else
        echo "not ok - $what: $(tail -3 "$tmp/check.err")"
        fails=$((fails + 1))
    fi
}

C="--calib $X --calib-ctx 128 --calib-tokens 8192"
bad 2 "invalid value" --attn -1 $C
bad 2 "invalid value" --sub 0 $C
bad 1 "6 attention sub-blocks of 5" --attn 6 $C
bad 1 "6 MLP sub-blocks of 5" --mlp 6 $C
bad 1 "at least one must stay" --sub 10 $C
bad 1 "at least one must stay" --attn 5 --mlp 5 $C
bad 1 "nothing to drop" --attn 0 --mlp 0 $C
bad 1 "one of them" --attn 1 --blocks 1 $C
bad 1 "one of them" --sub 1 --which attn:1 $C
bad 1 "calibration text" --mlp 2
bad 1 "expected attn:LAYER" --which attn:x
bad 1 "expected attn:LAYER" --which ffn:1
bad 1 "expected attn:LAYER" --which attn:-1
bad 1 "a comma at the end" --which attn:1,
bad 1 "does not exist" --which mlp:9
bad 1 "listed twice" --which attn:1,attn:1
bad 1 "every sub-block listed" --which attn:0,attn:1,attn:2,attn:3,attn:4,mlp:0,mlp:1,mlp:2,mlp:3,mlp:4
"$SQZ" drop "$MODEL" -o "$tmp/out.gguf" --which attn:1 --no-progress > "$tmp/stdout" 2> "$tmp/stderr"
if [ $? -eq 1 ] && grep -q "name it .sqzf" "$tmp/stderr" && [ ! -e "$tmp/out.gguf" ]; then
    echo "ok - drop --which attn:1 -o OUT.gguf: $(cat "$tmp/stderr")"
else
    echo "not ok - drop -o OUT.gguf: $(cat "$tmp/stderr")"
    fails=$((fails + 1))
fi

# ranked: one attention and one MLP; --json lists all 10 sub-blocks
if "$SQZ" drop "$MODEL" -o "$tmp/s.sqzf" --attn 1 --mlp 1 $C --json --no-progress > "$tmp/j" 2> /dev/null &&
    python3 - "$tmp/j" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
sb = j["subblocks"]
assert len(sb) == 10 and all(e["influence"] is not None and 0 <= e["influence"] <= 2 for e in sb), sb
drop = [e for e in sb if e["state"] == "dropped"]
assert sorted(e["kind"] for e in drop) == ["attn", "mlp"], drop
for e in drop:  # the least of its kind
    assert all(e["influence"] <= o["influence"] for o in sb if o["kind"] == e["kind"]), (e, sb)
assert j["dropped_attn"] == [e["layer"] for e in drop if e["kind"] == "attn"]
assert j["sqzf"] is True and len(j["influence"]) == 5
PY
then
    echo "ok - drop --attn 1 --mlp 1 --json: every sub-block's influence, the least of each kind dropped"
else
    echo "not ok - drop --attn 1 --mlp 1 --json: $(cat "$tmp/j")"
    fails=$((fails + 1))
fi
check "info shows sqz.subblocks" sh -c "'$SQZ' info '$tmp/s.sqzf' | grep -q 'sqz.subblocks'"
check "ppl runs the sqzf" "$SQZ" ppl "$tmp/s.sqzf" -f $X --max-tokens 600 --ctx 256 --no-progress -t 1
check "ppl with a q8 KV cache, decoding token by token" "$SQZ" ppl "$tmp/s.sqzf" -f $X --max-tokens 300 --ctx 256 \
    --kv q8 --kv-prefill 16 --no-progress -t 2
"$SQZ" generate "$tmp/s.sqzf" -p "Once upon a time" -n 40 --temp 0 -t 1 > "$tmp/g1" 2> /dev/null
"$SQZ" generate "$tmp/s.sqzf" -p "Once upon a time" -n 40 --temp 0 -t 2 > "$tmp/g2" 2> /dev/null
if [ -s "$tmp/g1" ] && cmp -s "$tmp/g1" "$tmp/g2"; then
    echo "ok - generate: the same text at one and two threads"
else
    echo "not ok - generate: '$(cat "$tmp/g1")' vs '$(cat "$tmp/g2")'"
    fails=$((fails + 1))
fi
check "convert to q8_0 keeps the sub-blocks" sh -c "'$SQZ' convert '$tmp/s.sqzf' -o '$tmp/c.sqzf' --type q8_0 --no-progress &&
    '$SQZ' info '$tmp/c.sqzf' | grep -q 'sqz.subblocks' && '$SQZ' ppl '$tmp/c.sqzf' -f $X --max-tokens 600 --ctx 256 --no-progress"
check "quantize gptq runs it" sh -c "'$SQZ' quantize '$tmp/s.sqzf' -o '$tmp/q.sqzf' --type q8_0 --method gptq $C --no-progress &&
    '$SQZ' info '$tmp/q.sqzf' | grep -q 'sqz.subblocks' && '$SQZ' ppl '$tmp/q.sqzf' -f $X --max-tokens 600 --ctx 256 --no-progress"
# what needs every sub-block refuses the model with one line, and writes nothing
for c in "prune --method magnitude --density 0.5" "lowrank --method svd --params 0.5" \
         "quantize --method rsq --type q4_0 $C" "bitstack $C --iters 2" "levels $C" "finetune -f $X --steps 1"; do
    set -- $c
    cmd=$1
    shift
    "$SQZ" $cmd "$tmp/s.sqzf" -o "$tmp/r.out" --no-progress "$@" > "$tmp/stdout" 2> "$tmp/stderr"
    st=$?
    if [ "$st" -eq 1 ] && [ "$(grep -c . "$tmp/stderr")" -eq 1 ] && grep -q "sub-blocks are dropped" "$tmp/stderr" &&
        [ ! -e "$tmp/r.out" ]; then
        echo "ok - $cmd refuses it: $(cat "$tmp/stderr")"
    else
        echo "not ok - $cmd on the sqzf: status $st: $(cat "$tmp/stderr")"
        fails=$((fails + 1))
    fi
done
# --sub and --which; both of a layer is the whole block
check "drop --sub 3" "$SQZ" drop "$MODEL" -o "$tmp/u.sqzf" --sub 3 $C --no-progress
if "$SQZ" drop "$MODEL" -o "$tmp/w.sqzf" --which attn:2,mlp:2 --json --no-progress > "$tmp/j" 2> /dev/null &&
    grep -q '"blocks_out":4' "$tmp/j" && grep -q '"sqzf":false' "$tmp/j" &&
    "$SQZ" drop "$MODEL" -o "$tmp/b.gguf" --block-list 2 --no-progress 2> /dev/null &&
    "$SQZ" ppl "$tmp/w.sqzf" -f $X --max-tokens 600 --ctx 256 --no-progress 2> /dev/null | head -1 > "$tmp/p1" &&
    "$SQZ" ppl "$tmp/b.gguf" -f $X --max-tokens 600 --ctx 256 --no-progress 2> /dev/null | head -1 > "$tmp/p2" &&
    cut -d'(' -f1 "$tmp/p1" > "$tmp/p1c" && cut -d'(' -f1 "$tmp/p2" > "$tmp/p2c" && cmp -s "$tmp/p1c" "$tmp/p2c"; then
    echo "ok - --which attn:2,mlp:2 = --block-list 2 (4 blocks, same ppl: $(cat "$tmp/p1c"))"
else
    echo "not ok - --which attn:2,mlp:2: $(cat "$tmp/j") $(cat "$tmp/p1" "$tmp/p2")"
    fails=$((fails + 1))
fi
# search --levels depth --sub N: sub-blocks as EvoPress's units, into sqzf
if "$SQZ" search "$MODEL" -o "$tmp/e.sqzf" --levels depth --sub 2 $C --generations 3 --offspring 4 --pool 4 \
    --json --no-progress > "$tmp/j" 2> /dev/null &&
    python3 -c "import json, sys; j = json.load(open(sys.argv[1])); assert len(j['dropped_attn']) + len(j['dropped_mlp']) == 2, j" \
    "$tmp/j" && "$SQZ" ppl "$tmp/e.sqzf" -f $X --max-tokens 600 --ctx 256 --no-progress > /dev/null 2>&1; then
    echo "ok - search --levels depth --sub 2: two sub-blocks dropped, the sqzf scores"
else
    echo "not ok - search --sub: $(cat "$tmp/j")"
    fails=$((fails + 1))
fi
"$SQZ" search "$MODEL" -o "$tmp/e2.sqzf" --levels depth --sub 2 --blocks 1 $C --no-progress > /dev/null 2> "$tmp/stderr"
if [ $? -eq 1 ] && grep -q "one of them" "$tmp/stderr"; then
    echo "ok - search --sub and --blocks: $(cat "$tmp/stderr")"
else
    echo "not ok - search --sub --blocks: $(cat "$tmp/stderr")"
    fails=$((fails + 1))
fi
# no --type: a quantized model keeps its types (a Q8_0 file does not come back as a bigger f16)
check "drop from a q8_0 GGUF keeps q8_0" sh -c "'$SQZ' convert '$MODEL' -o '$tmp/q8.gguf' --type q8_0 --no-progress &&
    '$SQZ' drop '$tmp/q8.gguf' -o '$tmp/q8d.gguf' --block-list 1 --no-progress &&
    '$SQZ' info '$tmp/q8d.gguf' | grep -q 'q8_0 weights' &&
    [ \$(stat -c %s '$tmp/q8d.gguf') -lt \$(stat -c %s '$tmp/q8.gguf') ]"
[ "$fails" -eq 0 ]
