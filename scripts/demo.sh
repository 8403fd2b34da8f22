#!/bin/sh
# The main job, from a fresh Debian 12 machine: install what is missing, build, then run the
# embedded model - generate a story and measure perplexity on held-out TinyStories text.
# Needs nothing from ../shared.
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -s -j"$(nproc)" build/sqz
SQZ=${SQZ:-build/sqz}
M=assets/stories260K/stories260K.bin
echo "== sqz generate (stories260K, greedy, 200 tokens)" >&2
printf 'Once upon a time'   # generate prints the continuation alone
$SQZ generate $M -p "Once upon a time" -n 200 --temp 0
echo "== sqz ppl (held-out TinyStories slice, windows of 256 tokens)" >&2
$SQZ ppl $M -f assets/tinystories-valid-slice.txt --ctx 256
