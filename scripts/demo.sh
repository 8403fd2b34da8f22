#!/bin/sh
# The main job on the embedded model: generate a story, then measure perplexity on held-out
# TinyStories text. Runs without ../shared.
set -e
SQZ=${SQZ:-build/sqz}
M=assets/stories260K/stories260K.bin
T=assets/stories260K/tok512.bin
echo "== sqz generate (stories260K, greedy)" >&2
$SQZ generate $M --tokenizer $T -p "Once upon a time" -n 200 --temp 0
echo "== sqz ppl (held-out TinyStories slice)" >&2
$SQZ ppl $M --tokenizer $T -f assets/tinystories-valid-slice.txt --ctx 256
