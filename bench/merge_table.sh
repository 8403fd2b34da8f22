#!/bin/sh
# Every element-wise merge method on ../shared/models/merge's three fine-tunes (base
# sqz-llama-14m): one JSON line per method with its perplexity and gap closed R_d on each
# domain's test text (as merge_baselines.json: --ctx 256 --max-tokens 30000), the output's
# bytes, seconds and peak RSS. pleas and otfusion (calibration, minutes) are measured apart:
# docs/merge-methods.md. Usage: sh bench/merge_table.sh [OUT.jsonl]   (about 10 minutes)
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
M=$SHARED/models/merge
B=$SHARED/models/sqz-llama-14m
[ -n "$1" ] && exec > "$1"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cfg() { # name method parameters
    printf 'merge_method: %s\nbase_model: %s\nmodels:\n  - model: %s/ft-shakespeare\n  - model: %s/ft-bible\n  - model: %s/ft-pydoc\nparameters: %s\ndtype: float32\n' \
        "$2" "$B" "$M" "$M" "$M" "$3" > "$tmp/$1.yml"
}
cfg linear linear '{weight: 1.0}'
cfg task_arithmetic task_arithmetic '{weight: 1.0, lambda: 0.3}'
cfg ties ties '{weight: 1.0, density: 0.2, lambda: 1.0}'
cfg dare_linear dare_linear '{weight: 1.0, density: 0.5, lambda: 0.3}'
cfg dare_ties dare_ties '{weight: 1.0, density: 0.5, lambda: 0.5, normalize: true}'
cfg breadcrumbs breadcrumbs '{weight: 1.0, density: 0.9, gamma: 0.01, lambda: 0.3}'
cfg breadcrumbs_ties breadcrumbs_ties '{weight: 1.0, density: 0.9, gamma: 0.01, lambda: 0.5}'
cfg della della '{weight: 1.0, density: 0.5, epsilon: 0.1, lambda: 0.5}'
cfg della_linear della_linear '{weight: 1.0, density: 0.5, epsilon: 0.1, lambda: 0.3}'
cfg model_stock model_stock '{}'
cfg consensus consensus '{weight: 1.0, k: 2, mask_lambda: 0.4, lambda: 0.3}'
cfg tall_masks tall_masks '{weight: 1.0, lambda: 0.3, mask_lambda: 0.6}'
cfg opcm opcm '{alpha: 0.3}'
printf 'merge_method: slerp\nbase_model: %s/ft-shakespeare\nmodels:\n  - model: %s/ft-shakespeare\n  - model: %s/ft-bible\nparameters: {t: 0.5}\ndtype: float32\n' \
    "$M" "$M" "$M" > "$tmp/slerp.yml"
for m in linear task_arithmetic ties dare_linear dare_ties breadcrumbs breadcrumbs_ties della della_linear slerp \
         model_stock consensus tall_masks opcm; do
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$SQZ" merge "$tmp/$m.yml" -o "$tmp/o-$m" --seed 1 --no-progress 2> "$tmp/err" ||
        { echo "merge_table: $m failed: $(cat "$tmp/err")" >&2; continue; }
    ppls=""
    for d in shakespeare bible pydoc; do
        ppls="$ppls $("$SQZ" ppl "$tmp/o-$m" -f "$M/$d.test.txt" --ctx 256 --max-tokens 30000 --json --no-progress 2>/dev/null |
                      python3 -c "import json, sys; print(json.load(sys.stdin)['ppl'])")"
    done
    python3 -c "
import json, math, os, sys
m, folder, t, rss = sys.argv[1:5]
ppl = [float(x) for x in sys.argv[5:8]]
ref = json.load(open(sys.argv[8]))['ppl']
doms = ['shakespeare', 'bible', 'pydoc']
spec = {'shakespeare': 'ft-shakespeare', 'bible': 'ft-bible', 'pydoc': 'ft-pydoc'}
r = [(math.log(ref['base'][d]) - math.log(p)) / (math.log(ref['base'][d]) - math.log(ref[spec[d]][d]))
     for d, p in zip(doms, ppl)]
print(json.dumps({'method': m, 'ppl': dict(zip(doms, ppl)), 'r': dict(zip(doms, r)), 'min_r': min(r),
                  'mean_r': sum(r) / 3, 'bytes': os.path.getsize(folder + '/model.safetensors'),
                  'seconds': float(t), 'peak_rss_mib': int(rss) / 1024}))" \
        "$m" "$tmp/o-$m" $(tail -1 "$tmp/time") $ppls "$M/merge_baselines.json"
    rm -rf "$tmp/o-$m"
done
