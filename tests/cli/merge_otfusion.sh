#!/bin/sh
# CLI: `sqz merge CONFIG.yaml -o OUT --task-calib DOMAIN=TEXT ...` with merge_method: otfusion on
# ../shared/models/merge (two of the fine-tunes, a few calibration windows from their train
# texts, never the test texts): it writes a model that loads, has a finite perplexity and
# matches the linear merge of the same pair on a held-out slice of each train text (within
# 2 %: fine-tunes of one base align to the identity, so OT fusion is about their average, 0.8 %
# above it here); exact: 1 (the permutation merge) runs; --json has the method and peak RSS;
# reg <= 0, a parameter otfusion does not take and all-zero weights each fail with one line and
# nothing written.
# (Sinkhorn and the shuffled-copy recovery are in tests/test_sinkhorn.c, test_merge_otfusion.c.)
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
M=$SHARED/models/merge
if [ ! -f "$M/ft-bible/config.json" ]; then
    echo "skip - otfusion merge CLI: needs $M"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }

models() { printf 'models:\n  - model: %s/ft-bible\n  - model: %s/ft-pydoc\n' "$M" "$M"; }
{ echo 'merge_method: otfusion'; models; } > "$tmp/o.yml"
{ echo 'merge_method: linear'; models; echo 'parameters: {weight: 1}'; } > "$tmp/l.yml"
calib="--task-calib bible=$M/bible.train.txt --task-calib pydoc=$M/pydoc.train.txt --calib-tokens 1024 --calib-ctx 128"
# shellcheck disable=SC2086
$SQZ merge "$tmp/o.yml" -o "$tmp/o" $calib --json --threads 2 > "$tmp/j" 2> "$tmp/err"
check $? "otfusion with --task-calib runs"
rss_cap=300; [ "${SQZ_QUICK:-0}" != 0 ] && rss_cap=4000
python3 -c "
import json, sys
j = json.load(open(sys.argv[1]))
assert j['method'] == 'otfusion' and j['n_models'] == 2 and j['n_tensors'] == 74, j
assert 0 < j['peak_rss_mib'] < int(sys.argv[2]), j['peak_rss_mib']
" "$tmp/j" "$rss_cap" 2>> "$tmp/err"
check $? "--json: method otfusion, 2 models, 74 tensors, peak RSS under $rss_cap MiB"
grep -q 'Sinkhorn, reg 0.01' "$tmp/o/README.md"
check $? "the model card names Sinkhorn and the default reg"
$SQZ merge "$tmp/l.yml" -o "$tmp/l" --no-progress 2> "$tmp/err"
# held out: the train texts' last 40 KB (the calibration windows are spread over the whole
# file, so a slice overlaps at most one of them)
for d in bible pydoc; do tail -c 40000 "$M/$d.train.txt" > "$tmp/$d.txt"; done
ppl() { $SQZ ppl "$1" -f "$2" --ctx 128 --max-tokens 4000 --json --no-progress 2>/dev/null |
        python3 -c "import json, sys; print(json.load(sys.stdin)['ppl'])"; }
for d in bible pydoc; do
    po=$(ppl "$tmp/o" "$tmp/$d.txt"); pl=$(ppl "$tmp/l" "$tmp/$d.txt")
    python3 -c "import math, sys; o, l = map(float, sys.argv[1:]); sys.exit(0 if math.isfinite(o) and o <= 1.02 * l else 1)" "$po" "$pl"
    check $? "otfusion finite and within 2 % of linear on held-out $d train text (ppl $po vs $pl)"
done
printf 'parameters: {exact: 1}\n' >> "$tmp/o.yml"
# shellcheck disable=SC2086
$SQZ merge "$tmp/o.yml" -o "$tmp/e" $calib --no-progress 2> "$tmp/err" && grep -q 'exact OT' "$tmp/e/README.md"
check $? "exact: 1 (the permutation merge) runs"

# refusals: one line on stderr, exit 1, nothing written
refuse() { # yaml-extra, expected message, what
    { echo 'merge_method: otfusion'; models; printf '%s\n' "$1"; } > "$tmp/x.yml"
    # shellcheck disable=SC2086
    $SQZ merge "$tmp/x.yml" -o "$tmp/x" $calib --no-progress 2> "$tmp/err"
    rc=$?; [ $rc = 1 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "$2" "$tmp/err" && [ ! -e "$tmp/x" ]
    check $? "$3: one line, exit 1, nothing written ($(cat "$tmp/err"))"
}
refuse 'parameters: {reg: -1}' 'reg = -1' "reg -1 refused"
refuse 'parameters: {budget: 1.5}' 'does not take parameter budget' "budget (a pleas key) refused"
refuse 'parameters: {weight: 0}' 'weights sum to 0' "all-zero weights refused"
