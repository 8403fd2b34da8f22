#!/bin/sh
# CLI: the option table (tools/sqz/args.c). A command refuses an option it does not take (exit
# 2, "COMMAND does not take --OPTION") instead of running without it; unknown options, missing
# and invalid values are usage errors (exit 2); `sqz --help` lists every option of the table
# and `sqz COMMAND --help` (exit 0) exactly the options COMMAND takes; a full command line of
# each command still parses and runs (the embedded stories260K, small and fast).
SQZ=${SQZ:-build/sqz}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fi; }
M=assets/stories260K/stories260K.bin
TOK="--tokenizer assets/stories260K/tok512.bin"
X=assets/tinystories-valid-slice.txt
COMMANDS="info generate ppl convert quantize kvbench kvcalib"

# usage_error WHAT WANT ARGS...: exit status 2, one line on stderr containing WANT, no stdout
usage_error() {
    what=$1; want=$2; shift 2
    $SQZ "$@" > "$tmp/o" 2> "$tmp/e"; rc=$?
    [ $rc -eq 2 ] && [ ! -s "$tmp/o" ] && [ "$(wc -l < "$tmp/e")" -eq 1 ] && grep -qF -- "$want" "$tmp/e"
    check $? "$what: exit $rc, $(cat "$tmp/e")"
}
usage_error "generate refuses quantize's --rsq-rmin" "generate does not take --rsq-rmin" \
    generate $M $TOK -p x -n 4 --rsq-rmin 0.5
usage_error "info refuses generate's -p (short alias)" "info does not take -p" info $M -p x
usage_error "an unknown option" "unknown option --no-such-option" generate $M -p x --no-such-option
usage_error "a missing value" "sqz: --ctx needs a value" ppl $M -f $X --ctx
usage_error "an invalid value" "sqz: invalid value 'x' for -n" generate $M -p x -n x
usage_error "a value out of range" "sqz: invalid value '0' for --threads" info $M --threads 0
usage_error "an enum value not among its choices" "sqz: invalid value 'gguf' for --compat" \
    ppl $M -f $X --compat gguf
usage_error "a float outside its open range" "sqz: invalid value '1' for --mix-frac" \
    quantize $M -o "$tmp/q.gguf" --type q4_0 --mix-frac 1
usage_error "a second MODEL" "unexpected argument" info $M $M

# the options of a help text: "  -p, --prompt TEXT  ..." -> --prompt
options_of() { sed -n 's/^  \(-[a-z], \)\{0,1\}\(--[a-z-]*\).*/\2/p'; }

$SQZ --help > "$tmp/help" 2>&1
check $? "sqz --help exits 0"
options_of < "$tmp/help" | sort -u > "$tmp/all"  # -u: --lora is two rows (an adapter; finetune's rank)
grep -o '^    { "--[a-z-]*"' tools/sqz/args.c | sed 's/.*"\(--[a-z-]*\)"/\1/' | sort -u > "$tmp/table"
[ "$(wc -l < "$tmp/table")" -ge 30 ] && cmp -s "$tmp/all" "$tmp/table"
check $? "sqz --help lists every option of args.c's table ($(wc -l < "$tmp/table") options)"
for c in $COMMANDS; do
    grep -q "^  $c MODEL" "$tmp/help" || echo "$c" >> "$tmp/nocmd"
done
[ ! -s "$tmp/nocmd" ]
check $? "sqz --help has each command's line"

# each command's help lists its options; every other option of the table is refused
for c in $COMMANDS; do
    $SQZ $c --help > "$tmp/h" 2> "$tmp/e"; rc=$?
    options_of < "$tmp/h" | sort > "$tmp/takes"
    common=0
    for o in --tokenizer --threads --json --no-progress; do grep -qx -- "$o" "$tmp/takes" || common=1; done
    [ $rc -eq 0 ] && [ ! -s "$tmp/e" ] && grep -q "^usage: sqz $c" "$tmp/h" && [ $common -eq 0 ]
    check $? "sqz $c --help exits 0 and lists --tokenizer, --threads, --json, --no-progress"
    bad=""
    for o in $(comm -23 "$tmp/all" "$tmp/takes"); do
        $SQZ $c no-model $o 1 > /dev/null 2> "$tmp/e"; rc=$?
        { [ $rc -eq 2 ] && grep -qF "$c does not take $o" "$tmp/e"; } || bad="$bad $o"
    done
    [ -z "$bad" ]
    check $? "$c refuses the $(comm -23 "$tmp/all" "$tmp/takes" | wc -l) options its help does not list${bad:+ (accepted:$bad)}"
done

# full command lines of each command still parse and run; with --json, the object has the
# process's peak memory (peak_rss_mib, every command)
runs() {
    what=$1; shift; $SQZ "$@" > "$tmp/o" 2> "$tmp/e"; rc=$?; check $rc "$what (exit $rc)"
    case " $* " in *" --json "*)
        python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['peak_rss_mib'] > 0, d" \
            "$tmp/o" 2> /dev/null
        check $? "  its --json has peak_rss_mib > 0: $(grep -o '"peak_rss_mib":[^,}]*' "$tmp/o")";;
    esac
}
runs "info with every option it takes" info $M $TOK --threads 1 --json --no-progress
runs "generate with every option it takes" generate $M $TOK -p "Once" -n 4 --temp 0.5 --top-p 0.9 \
    --seed 3 -t 1 --json --no-progress
runs "generate with the long names" generate $M --prompt "Once" --n-predict 4 --threads 1
runs "ppl with every option it takes" ppl $M $TOK -f $X -c 64 --max-tokens 300 --kv q4 \
    --kv-prefill 16 --kld-base $M --kld-cache "$tmp/k.kld" -t 1 --json --no-progress
runs "ppl --compat llama.cpp --chunks" ppl $M --file $X --ctx 64 --compat llama.cpp --chunks 2
runs "convert with every option it takes" convert $M $TOK -o "$tmp/c.gguf" --type q4_k_m --pure \
    --embd-type q8_0 -t 1 --json --no-progress
runs "kvbench with every option it takes" kvbench $M $TOK -f $X --ctx 64 --max-tokens 300 --kv q4 \
    --kv f16 --kv-prefill 16 --kld-cache "$tmp/kb.kld" --no-decode -t 1 --json --no-progress
runs "kvcalib with every option it takes" kvcalib $M $TOK -f $X -o "$tmp/p.kvproj" \
    --calib-tokens 300 --calib-ctx 64 --max-tokens 400 -t 1 --json --no-progress
runs "kvcalib --calib FILE" kvcalib $M --calib $X --out "$tmp/p2.kvproj" --max-tokens 300
runs "quantize --method rtn" quantize $M $TOK -o "$tmp/q.gguf" --type q8_0 --method rtn -t 1 --json \
    --no-progress
# every quantize option at once: it parses, then fails on the missing calibration file (exit 1)
$SQZ quantize $M $TOK -o "$tmp/q2.gguf" --type q4_k_m --pure --embd-type q8_0 --method gptq \
    --calib "$tmp/no-such.txt" --calib-tokens 256 --calib-ctx 64 --act-order --damp 0.05 --seed 3 \
    --rsq-rmin 0.5 --fake-quant --mix-frac 0.2 --alloc --alloc-windows 2 -t 1 --json --no-progress \
    > "$tmp/o" 2> "$tmp/e"; rc=$?
[ $rc -eq 1 ] && grep -q "no-such.txt" "$tmp/e"
check $? "quantize takes every option it reads (exit $rc after parsing: $(cat "$tmp/e"))"
