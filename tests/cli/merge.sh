#!/bin/sh
# CLI: `sqz merge CONFIG.yaml -o OUT [--type T] [--seed S] [--json]` on ../shared/models/merge
# (the base sqz-llama-14m and its three fine-tunes): mergekit's own example configs for ties,
# dare_ties and gradient slerp (model paths and the layer range replaced) and a task_arithmetic
# config run, the last at merge_baselines.json's perplexity; merge + GPTQ in one command gives
# the model that merging and then quantizing gives; --json prints
# one object with peak_rss_mib, which stays about a few slabs of the largest tensor (6 MB);
# a merge straight to a q4_0 GGUF loads; bad input fails with one line on stderr and nothing
# written; opcm's running merge grows by --continual, and --eval tables a merge per domain.
# (The method-level checks are in tests/test_merge.c.)
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
M=$SHARED/models/merge
if [ ! -f "$M/ft-bible/config.json" ]; then
    echo "skip - merge CLI: needs $M"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }

# mergekit examples/ties.yml, paths replaced
cat > "$tmp/ties.yml" <<YAML
models:
  - model: $M/ft-shakespeare
    parameters:
      density: [1, 0.7, 0.1] # density gradient
      weight: 1.0
  - model: $M/ft-bible
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1] # weight gradient
  - model: $M/ft-pydoc
    parameters:
      density: 0.33
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
merge_method: ties
base_model: $SHARED/models/sqz-llama-14m
parameters:
  normalize: true
  int8_mask: true
dtype: float16
YAML
$SQZ merge "$tmp/ties.yml" -o "$tmp/ties" --json --threads 2 > "$tmp/j" 2> "$tmp/err"
check $? "mergekit's ties example runs"
# AddressSanitizer's quarantine keeps freed slabs resident: no memory bound there
case "$SQZ" in *asan*) rss_max=100000 ;; *) rss_max=150 ;; esac
python3 -c "
import json, os, sys
d = json.load(open(sys.argv[1]))
assert d['method'] == 'ties' and d['n_models'] == 4 and d['n_tensors'] == 74, d
assert d['out_bytes'] == os.path.getsize(sys.argv[2] + '/model.safetensors'), d
assert 0 < d['peak_rss_mib'] < float(sys.argv[3]), d
assert sorted(os.listdir(sys.argv[2])) == ['README.md', 'config.json', 'model.safetensors', 'tokenizer.json']
assert json.load(open(sys.argv[2] + '/config.json'))['torch_dtype'] == 'float16'" "$tmp/j" "$tmp/ties" $rss_max
check $? "--json: one object (ties of 4 models, 74 tensors, out_bytes, peak_rss_mib < $rss_max); an f16 HF folder with its model card"
$SQZ ppl "$tmp/ties" -f "$M/bible.test.txt" --ctx 256 --max-tokens 600 --no-progress > /dev/null 2>&1
check $? "the merged folder runs (sqz ppl)"

# task_arithmetic as mergekit's merge-method guide writes it (mergekit ships no example file
# for it): per-model weight, global lambda; lambda 0.3 in f32 is merge_baselines.json's row
# (test_merge.c checks the linear one)
cat > "$tmp/ta.yml" <<YAML
merge_method: task_arithmetic
base_model: $SHARED/models/sqz-llama-14m
models:
  - model: $M/ft-shakespeare
    parameters:
      weight: 1.0
  - model: $M/ft-bible
    parameters:
      weight: 1.0
  - model: $M/ft-pydoc
    parameters:
      weight: 1.0
parameters:
  lambda: 0.3
  normalize: false
dtype: float32
YAML
$SQZ merge "$tmp/ta.yml" -o "$tmp/ta" --no-progress 2> "$tmp/err"
check $? "a mergekit task_arithmetic config runs ($(cat "$tmp/err"))"
ppl() { $SQZ ppl "$1" -f "$2" --ctx "$3" --max-tokens "$4" --json --no-progress 2>/dev/null |
        python3 -c "import json, sys; print(json.load(sys.stdin)['ppl'])"; }
pt=$(ppl "$tmp/ta" "$M/bible.test.txt" 256 30000)
python3 -c "
import json, sys
ref = json.load(open(sys.argv[1]))['ppl']['task_arithmetic lambda=0.3']['bible']
sys.exit(0 if abs(float(sys.argv[2]) / ref - 1) < 1e-3 else 1)" "$M/merge_baselines.json" "$pt" 2>> "$tmp/err"
check $? "task_arithmetic lambda 0.3: bible ppl $pt within 0.1 % of merge_baselines.json's"

# mergekit examples/gradient-slerp.yml, paths and layer_range replaced
cat > "$tmp/slerp.yml" <<YAML
slices:
  - sources:
      - model: $M/ft-shakespeare
        layer_range: [0, 8]
      - model: $M/ft-bible
        layer_range: [0, 8]
merge_method: slerp
base_model: $M/ft-shakespeare
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5 # fallback for rest of tensors
dtype: float16
YAML
$SQZ merge "$tmp/slerp.yml" -o "$tmp/slerp" --no-progress 2> "$tmp/err"
check $? "mergekit's gradient slerp example runs"

# a dare_ties config as in mergekit's README, straight to a q4_0 GGUF
cat > "$tmp/dare.yml" <<YAML
models:
  - model: $SHARED/models/sqz-llama-14m
  - model: $M/ft-bible
    parameters:
      density: 0.53
      weight: 0.4
  - model: $M/ft-pydoc
    parameters:
      density: 0.53
      weight: 0.3
merge_method: dare_ties
base_model: $SHARED/models/sqz-llama-14m
parameters:
  int8_mask: true
dtype: bfloat16
YAML
$SQZ merge "$tmp/dare.yml" -o "$tmp/d.gguf" --type q4_0 --seed 1 2> "$tmp/err"
check $? "dare_ties to a q4_0 GGUF runs"
[ "$(head -c 4 "$tmp/d.gguf")" = GGUF ] && $SQZ info "$tmp/d.gguf" 2>/dev/null | grep -q q4_0
check $? "the GGUF is q4_0"
[ "$(ls "$tmp" | grep -c '\.hf\.')" = 0 ]
check $? "the f32 folder it went through is gone"

# merge and quantize in one command (rtn: no calibration, fast; gptq is sqz quantize's own test)
$SQZ merge "$tmp/dare.yml" -o "$tmp/r.gguf" --type q8_0 --method rtn --json > "$tmp/j" 2> "$tmp/err"
check $? "merge + quantize (--method rtn) runs"
python3 -c "
import json, os, sys
d = json.load(open(sys.argv[1]))
assert d['quant_method'] == 'rtn' and d['out_bytes'] == os.path.getsize(sys.argv[2]), d" "$tmp/j" "$tmp/r.gguf" &&
    [ "$(ls "$tmp" | grep -c '\.merge\.')" = 0 ]
check $? "--json has quant_method and the file's size; the f32 folder is gone"
# merge + GPTQ in one command against merging first (f32, as the one command's own
# intermediate folder) and quantizing after: the same model
head -c 60000 "$M/bible.train.txt" > "$tmp/cal.txt"
$SQZ merge "$tmp/ta.yml" -o "$tmp/g1.gguf" --type q4_0 --method gptq --calib "$tmp/cal.txt" \
    --calib-tokens 1024 --calib-ctx 128 --no-progress 2> "$tmp/err" &&
    $SQZ quantize "$tmp/ta" -o "$tmp/g2.gguf" --type q4_0 --method gptq --calib "$tmp/cal.txt" \
        --calib-tokens 1024 --calib-ctx 128 --no-progress 2> "$tmp/err"
check $? "merge --method gptq, and quantize --method gptq of the merged folder, run"
p1=$(ppl "$tmp/g1.gguf" "$M/pydoc.test.txt" 128 600)
p2=$(ppl "$tmp/g2.gguf" "$M/pydoc.test.txt" 128 600)
p0=$(ppl "$tmp/ta" "$M/pydoc.test.txt" 128 600)
[ -n "$p1" ] && [ "$p1" = "$p2" ] && [ "$p1" != "$p0" ]
check $? "one pass = merge first, quantize after (ppl $p1 vs $p2; unquantized $p0)"
$SQZ merge "$tmp/dare.yml" -o "$tmp/g.gguf" --type q4_0 --method gptq 2> "$tmp/err"
[ $? = 1 ] && [ ! -e "$tmp/g.gguf" ] && grep -q "needs calibration text" "$tmp/err"
check $? "--method gptq without --calib: exit 1 before any work"
$SQZ merge "$tmp/dare.yml" -o "$tmp/g.gguf" --calib "$M/bible.train.txt" 2> /dev/null
[ $? = 1 ] && [ ! -e "$tmp/g.gguf" ]
check $? "--calib without --method for a merge_method that takes none (dare_ties): exit 1, nothing written"

# tall_masks, then one task rebuilt from the base, the merge and its mask
cat > "$tmp/tall.yml" <<YAML
merge_method: tall_masks
base_model: $SHARED/models/sqz-llama-14m
models:
  - model: $M/ft-shakespeare
  - model: $M/ft-bible
  - model: $M/ft-pydoc
parameters: {weight: 1.0, mask_lambda: 0.4}
dtype: float16
YAML
$SQZ merge "$tmp/tall.yml" -o "$tmp/tall" 2> "$tmp/err" &&
    $SQZ merge "$tmp/tall.yml" --extract 1 --from "$tmp/tall" -o "$tmp/task1" --json > "$tmp/j" 2> "$tmp/err"
check $? "tall_masks, then --extract 1 --from it ($(cat "$tmp/err"))"
python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert d['method'] == 'tall_masks' and d['n_models'] == 2 and d['n_tensors'] == 74, d" "$tmp/j"
check $? "--extract --json: one object (the base and the merged folder as inputs)"
$SQZ merge "$tmp/tall.yml" --from "$tmp/tall" -o "$tmp/x" 2> /dev/null
[ $? = 1 ] && [ ! -e "$tmp/x" ]
check $? "--from without --extract: exit 1"

# opcm: a running merge started from a config of one model, then one model added with
# --continual; the state folder is a model sqz runs; --eval prints the table with R_d
cat > "$tmp/opcm.yml" <<YAML
merge_method: opcm
base_model: $SHARED/models/sqz-llama-14m
models:
  - model: $M/ft-shakespeare
parameters: {alpha: 0.5}
YAML
$SQZ merge "$tmp/opcm.yml" -o "$tmp/opcm" --no-progress 2> "$tmp/err" &&
    $SQZ merge --continual "$tmp/opcm" "$M/ft-bible" --json --no-progress --eval "bible=$M/bible.test.txt" \
        --ctx 128 --max-tokens 1025 > "$tmp/j" 2> "$tmp/err"
check $? "opcm: a state of one model, then --continual STATE MODEL --eval ($(cat "$tmp/err"))"
python3 -c "
import json, os, sys
d = json.load(open(sys.argv[1]))
assert d['method'] == 'opcm' and d['n_models'] == 2 and d['n_tensors'] == 74, d
s = json.load(open(sys.argv[2] + '/opcm.json'))
assert s['n_models'] == 2 and len(s['models']) == 2 and s['models'][1].endswith('ft-bible'), s
e = d['eval']
assert [r['role'] for r in e['rows']] == ['base', 'input', 'input', 'merge'], e
assert e['domains'][0]['specialist'].endswith('ft-bible') and e['domains'][0]['tokens'] == 1024, e
rows = {os.path.basename(r['model']): r for r in e['rows']}
assert abs(rows['ft-bible']['r']['bible'] - 1) < 1e-9 and abs(rows['sqz-llama-14m']['r']['bible']) < 1e-9
assert rows['ft-bible']['kld']['bible'] < 1e-6 < rows['sqz-llama-14m']['kld']['bible']
assert 0 < e['rows'][-1]['r']['bible'] < 1, e['rows'][-1]" "$tmp/j" "$tmp/opcm"
check $? "--continual --json: n_models 2, opcm.json updated; eval rows base/inputs/merge, R_d 1 for the specialist"
$SQZ ppl "$tmp/opcm" -f "$M/bible.test.txt" --ctx 128 --max-tokens 300 --no-progress > /dev/null 2>&1
check $? "the state folder runs (sqz ppl)"
$SQZ merge --continual "$tmp/ties" "$M/ft-pydoc" 2> "$tmp/err"
[ $? = 1 ] && grep -q "not a running opcm merge" "$tmp/err"
check $? "--continual on a folder that is no running merge: exit 1 ($(cat "$tmp/err"))"
$SQZ merge --continual "$tmp/opcm" "$M/ft-pydoc" -o "$tmp/x" 2> /dev/null
[ $? = 1 ] && [ ! -e "$tmp/x" ] && python3 -c "
import json, sys
assert json.load(open(sys.argv[1]))['n_models'] == 2" "$tmp/opcm/opcm.json"
check $? "--continual with -o: exit 1, the state unchanged"

# bad input: one line on stderr, nothing written
$SQZ merge "$tmp/ties.yml" -o "$tmp/ties" > "$tmp/out" 2> "$tmp/err"
[ $? = 1 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "not an empty folder" "$tmp/err" && [ ! -s "$tmp/out" ]
check $? "an existing output folder: exit 1, one line ($(cat "$tmp/err"))"
$SQZ merge "$tmp/ties.yml" -o "$tmp/x" --type q4_0 2> "$tmp/err"
[ $? = 1 ] && [ ! -e "$tmp/x" ] && grep -q "f32, f16 or bf16" "$tmp/err"
check $? "a quantized type for a folder: exit 1, nothing written"
sed "s#$M/ft-pydoc#$SHARED/models/sqz-llama-26m#" "$tmp/ties.yml" > "$tmp/bad.yml"
$SQZ merge "$tmp/bad.yml" -o "$tmp/x" 2> "$tmp/err"
[ $? = 1 ] && [ ! -e "$tmp/x" ] && grep -q "sqz-llama-26m: hidden size 512" "$tmp/err"
check $? "another architecture: exit 1 naming the file and the field ($(cat "$tmp/err"))"
$SQZ merge "$tmp/ties.yml" 2> "$tmp/err"
[ $? = 1 ] && grep -q "needs an output" "$tmp/err"
check $? "no -o: exit 1"
$SQZ merge "$tmp/ties.yml" -o "$tmp/x" --kv f16 2> /dev/null
[ $? = 2 ] && [ ! -e "$tmp/x" ]
check $? "an option merge does not take: exit 2"
[ "$(ls "$tmp" | grep -c tmp)" = 0 ]
check $? "no temporary left anywhere"
