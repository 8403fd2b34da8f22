#!/bin/sh
# Runs every test program in $BUILD/tests, every fuzz corpus replay in $BUILD/fuzz and every
# CLI test script in tests/cli, and adds their checks up. Ends with "N passed, N failed" and
# exits non-zero if anything failed (a program that crashes counts as a failure).
BUILD=${BUILD:-build}
export BUILD
export SQZ=${SQZ:-$BUILD/sqz}
pass=0; fail=0; skip=0
log=$(mktemp); trap 'rm -f "$log"' EXIT
run_one() { # name, command...
    name=$1; shift
    start=$(date +%s)
    "$@" > "$log" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$log"); f=$(grep -c '^not ok ' "$log"); s=$(grep -c '^skip ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "not ok - $name exited with $rc" >> "$log"; fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    echo "== $name: $p passed, $f failed, $s skipped ($(( $(date +%s) - start ))s)"
    if [ "$f" -ne 0 ]; then grep -A3 '^not ok ' "$log" | head -40; tail -5 "$log"; fi
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] && run_one "$(basename "$t")" "$t"
done
for t in "$BUILD"/fuzz/*_replay; do
    [ -x "$t" ] || continue
    n=$(basename "$t" _replay)
    run_one "$n corpus" "$t" "fuzz/corpus/${n#fuzz_}"
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] && run_one "$(basename "$t")" sh "$t"
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
