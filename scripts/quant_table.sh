#!/bin/sh
# quant_table.sh - the type x method table of issue 4: for each (type, method) a GGUF (or sqzf)
# of sqz-llama-26m quantized with calibration calib-1m.txt, then perplexity and KL divergence
# to the F16 model on each text at --ctx 1024 --max-tokens 20481: sotu.test and mail.test by
# default; SQZ_TEXTS="sotu mail moby wiki" adds moby.test and WikiText-2 (wiki.test.raw, a
# domain neither the model nor the calibration text has seen).
#
#   sh scripts/quant_table.sh OUT_DIR [TYPES] [METHODS] [CALIB_TOKENS] [THREADS]
#
# TYPES: space-separated, a "pure:" prefix for llama-quantize --pure (default: pure:q6_k
# pure:q4_k pure:q3_k pure:q2_k q4_k_m q3_k_m q2_k); METHODS default "rtn imatrix gptq rsq"
# (also decoupleq, whose natural type is dq2, mixllm with types q4 / q3, written as sqzf, and
# gptq-alloc: gptq --alloc, each matrix's type chosen by measured KL within the mix's bytes).
# Resumable: a (type, method, text) already in OUT_DIR/results.jsonl is skipped. The base's
# logits are cached per text (--kld-cache), so the F16 model runs once per text.
set -eu
OUT=${1:?usage: quant_table.sh OUT_DIR [TYPES] [METHODS] [CALIB_TOKENS] [THREADS]}
TYPES=${2:-"pure:q6_k pure:q4_k pure:q3_k pure:q2_k q4_k_m q3_k_m q2_k"}
METHODS=${3:-"rtn imatrix gptq rsq"}
CALIB_TOKENS=${4:-32768}
THREADS=${5:-2}
SHARED=${SQZ_SHARED:-../shared}
SQZ=${SQZ:-build/sqz}
BASE=$SHARED/models/sqz-llama-26m
TEXTS=${SQZ_TEXTS:-sotu mail}
mkdir -p "$OUT"
RES=$OUT/results.jsonl
touch "$RES"
for t in $TYPES; do
  case $t in pure:*) type=${t#pure:}; pure=--pure; tag=$type-pure;; *) type=$t; pure=; tag=$t;; esac
  for m in $METHODS; do
    case $m in mixllm) f=$OUT/$tag-$m.sqzf;; *) f=$OUT/$tag-$m.gguf;; esac
    case $m in gptq-alloc) meth=gptq; extra=--alloc;; *) meth=$m; extra=;; esac
    for text in $TEXTS; do
      case $text in wiki) path=$SHARED/data/wikitext-2/wiki.test.raw;; *) path=$SHARED/data/domains/$text.test.txt;; esac
      if grep -q "\"tag\":\"$tag\",\"method\":\"$m\",\"text\":\"$text\"" "$RES"; then continue; fi
      if [ ! -f "$f" ]; then
        $SQZ quantize "$BASE" --method "$meth" $extra --type "$type" $pure -o "$f" --calib "$SHARED/data/calib/calib-1m.txt" \
          --calib-tokens "$CALIB_TOKENS" --threads "$THREADS" --json --no-progress > "$OUT/$tag-$m.quantize.json"
      fi
      bytes=$(stat -c %s "$f")
      j=$($SQZ ppl "$f" -f "$path" --ctx 1024 --max-tokens 20481 \
          --kld-base "$BASE" --kld-cache "$OUT/base-$text.kld" --threads "$THREADS" --json --no-progress)
      echo "{\"tag\":\"$tag\",\"method\":\"$m\",\"text\":\"$text\",\"bytes\":$bytes,\"ppl_json\":$j}" >> "$RES"
      echo "$tag $m $text $bytes $j" | cut -c1-200 >&2
    done
  done
done
