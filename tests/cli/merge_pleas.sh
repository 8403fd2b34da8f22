#!/bin/sh
# CLI: `sqz merge CONFIG.yaml -o OUT --calib FILE | --task-calib DOMAIN=TEXT ...` with
# merge_method: pleas on ../shared/models/merge (two of the fine-tunes, a few calibration
# windows from their train texts, never the test texts): it writes a model that loads and beats
# the linear merge of the same pair on a held-out slice of each train text; budget 1.5 writes
# an FFN 1.5 x wide (config.json's intermediate_size); --json has the method and peak RSS;
# a pleas config without calibration text, --task-calib without '=', and --calib for a method
# that takes none each fail with one line and nothing written.
# (The solver, the least squares and the shuffled-copy recovery are in tests/test_merge_pleas.c.)
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
M=$SHARED/models/merge
if [ ! -f "$M/ft-bible/config.json" ]; then
    echo "skip - pleas merge CLI: needs $M"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }

printf 'merge_method: pleas\nmodels:\n  - model: %s/ft-bible\n  - model: %s/ft-pydoc\n' "$M" "$M" > "$tmp/p.yml"
printf 'merge_method: linear\nmodels:\n  - model: %s/ft-bible\n  - model: %s/ft-pydoc\nparameters: {weight: 1}\n' \
    "$M" "$M" > "$tmp/l.yml"
$SQZ merge "$tmp/p.yml" -o "$tmp/p" --task-calib bible="$M/bible.train.txt" --task-calib pydoc="$M/pydoc.train.txt" \
    --calib-tokens 1024 --calib-ctx 128 --json --threads 2 > "$tmp/j" 2> "$tmp/err"
check $? "pleas with --task-calib runs"
# sanitizer builds (SQZ_QUICK=1, make test-asan) carry shadow memory: the bound is for plain builds
rss_cap=400; [ "${SQZ_QUICK:-0}" != 0 ] && rss_cap=4000
python3 -c "
import json, sys
j = json.load(open(sys.argv[1]))
assert j['method'] == 'pleas' and j['n_models'] == 2 and j['n_tensors'] == 74, j
assert 0 < j['peak_rss_mib'] < int(sys.argv[2]), j['peak_rss_mib']
" "$tmp/j" "$rss_cap" 2>> "$tmp/err"
check $? "--json: method pleas, 2 models, 74 tensors, peak RSS under $rss_cap MiB"
$SQZ merge "$tmp/l.yml" -o "$tmp/l" --no-progress 2> "$tmp/err"
# held out: the train texts' last 40 KB (the calibration windows are spread over the whole
# file, so a slice overlaps at most one of them)
for d in bible pydoc; do tail -c 40000 "$M/$d.train.txt" > "$tmp/$d.txt"; done
ppl() { $SQZ ppl "$1" -f "$2" --ctx 128 --max-tokens 4000 --json --no-progress 2>/dev/null |
        python3 -c "import json, sys; print(json.load(sys.stdin)['ppl'])"; }
for d in bible pydoc; do
    pp=$(ppl "$tmp/p" "$tmp/$d.txt"); pl=$(ppl "$tmp/l" "$tmp/$d.txt")
    python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$pp" "$pl"
    check $? "pleas beats linear on held-out $d train text (ppl $pp vs $pl)"
done
printf 'parameters: {budget: 1.5, damp: 0.05}\n' >> "$tmp/p.yml"
$SQZ merge "$tmp/p.yml" -o "$tmp/pb" --calib "$M/bible.train.txt" --calib-tokens 512 --calib-ctx 128 \
    --no-progress 2> "$tmp/err"
check $? "pleas budget 1.5 with one shared --calib text runs"
grep -q '"intermediate_size":[[:space:]]*1536' "$tmp/pb/config.json"
check $? "budget 1.5: intermediate_size 1536 in config.json"
$SQZ ppl "$tmp/pb" -f "$tmp/bible.txt" --ctx 128 --max-tokens 1000 --no-progress > /dev/null 2>&1
check $? "the wider merge loads and runs"

# refusals: one line on stderr, nothing written
head -n 5 "$tmp/p.yml" > "$tmp/p0.yml"
$SQZ merge "$tmp/p0.yml" -o "$tmp/x" 2> "$tmp/err"
rc=$?; [ $rc = 1 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "needs calibration text" "$tmp/err" && [ ! -e "$tmp/x" ]
check $? "pleas without calibration text: one line, exit 1, nothing written ($(cat "$tmp/err"))"
$SQZ merge "$tmp/p0.yml" -o "$tmp/x" --task-calib bible 2> "$tmp/err"
[ $? = 1 ] && grep -q "want DOMAIN=TEXT" "$tmp/err" && [ ! -e "$tmp/x" ]
check $? "--task-calib without DOMAIN=TEXT refused ($(cat "$tmp/err"))"
$SQZ merge "$tmp/l.yml" -o "$tmp/x" --calib "$M/bible.train.txt" 2> "$tmp/err"
[ $? = 1 ] && grep -q "takes no calibration text" "$tmp/err" && [ ! -e "$tmp/x" ]
check $? "--calib for linear refused ($(cat "$tmp/err"))"
