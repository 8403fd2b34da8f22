#!/bin/sh
# quant_table.sh - the type x method table of issue 4: for each (type, method) a GGUF (or sqzf)
# of sqz-llama-26m quantized with calibration calib-1m.txt, then perplexity and KL divergence
# to the F16 model on sotu.test and mail.test at --ctx 1024 --max-tokens 20481.
#
#   sh scripts/quant_table.sh OUT_DIR [TYPES] [METHODS] [CALIB_TOKENS] [THREADS]
#
# TYPES: space-separated, a "pure:" prefix for llama-quantize --pure (default: pure:q6_k
# pure:q4_k pure:q3_k pure:q2_k q4_k_m q3_k_m q2_k); METHODS default "rtn imatrix gptq rsq".
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
mkdir -p "$OUT"
RES=$OUT/results.jsonl
touch "$RES"
for t in $TYPES; do
  case $t in pure:*) type=${t#pure:}; pure=--pure; tag=$type-pure;; *) type=$t; pure=; tag=$t;; esac
  for m in $METHODS; do
    f=$OUT/$tag-$m.gguf
    for text in sotu mail; do
      if grep -q "\"tag\":\"$tag\",\"method\":\"$m\",\"text\":\"$text\"" "$RES"; then continue; fi
      if [ ! -f "$f" ]; then
        $SQZ quantize "$BASE" --method "$m" --type "$type" $pure -o "$f" --calib "$SHARED/data/calib/calib-1m.txt" \
          --calib-tokens "$CALIB_TOKENS" --threads "$THREADS" --json --no-progress > "$OUT/$tag-$m.quantize.json"
      fi
      bytes=$(stat -c %s "$f")
      j=$($SQZ ppl "$f" -f "$SHARED/data/domains/$text.test.txt" --ctx 1024 --max-tokens 20481 \
          --kld-base "$BASE" --kld-cache "$OUT/base-$text.kld" --threads "$THREADS" --json --no-progress)
      echo "{\"tag\":\"$tag\",\"method\":\"$m\",\"text\":\"$text\",\"bytes\":$bytes,\"ppl_json\":$j}" >> "$RES"
      echo "$tag $m $text $bytes $j" | cut -c1-200 >&2
    done
  done
done
