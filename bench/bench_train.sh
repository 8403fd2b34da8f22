#!/bin/sh
# bench/bench_train.sh - training speed, sqz vs PyTorch side by side on this machine, on the
# ft-shakespeare recipe (sqz-llama-14m, 8 windows of 256 tokens a step, AdamW, clip 1.0):
# STEPS steps of each, alternating ROUNDS times, both with 2 threads; the first 2 steps of each
# run are left out (allocation, caches). The PyTorch side is ../shared/tools/pytorch's model and
# loop (Debian's /usr/bin/python3 with python3-torch and python3-regex: `apt-get install
# python3-torch python3-regex`; not in scripts/install-deps.sh, as no test needs them). Prints
# one JSON line a run and a summary: {"sqz_tokens_per_s", "torch_tokens_per_s", "ratio"}. Run it
# alone on the machine.
# Usage: sh bench/bench_train.sh [STEPS=12] [ROUNDS=2]
set -e
cd "$(dirname "$0")/.."
/usr/bin/python3 -c 'import torch, regex' 2> /dev/null ||
    { echo "bench_train: needs Debian's python3-torch and python3-regex (apt-get install python3-torch python3-regex)" >&2; exit 1; }
STEPS=${1:-12}; ROUNDS=${2:-2}
SQZ=${SQZ:-build/sqz}
SHARED=$(cd "${SQZ_SHARED:-../shared}" && pwd)
M=$SHARED/models/sqz-llama-14m
TXT=$SHARED/models/merge/shakespeare.train.txt
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
head -c 300000 "$TXT" > "$tmp/train.txt"

sqz_run() {
    "$SQZ" finetune "$M" -f "$tmp/train.txt" -o "$tmp/out.gguf" --steps "$STEPS" -t 2 --json --no-progress \
        > "$tmp/sqz.json"
    python3 - "$tmp/sqz.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s = [x["seconds"] for x in d["log"][2:]]
print(json.dumps({"side": "sqz", "steps_timed": len(s), "s_per_step": sum(s) / len(s), "tokens_per_s": 2048 * len(s) / sum(s)}))
PY
}

torch_run() {
    /usr/bin/python3 - "$SHARED/tools/pytorch" "$M" "$tmp/train.txt" "$STEPS" <<'PY'
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import torch, torch.nn.functional as F
from finetune_domains import load_folder
from bpe import BPE
torch.set_num_threads(2)
folder, text, steps = sys.argv[2], sys.argv[3], int(sys.argv[4])
tr = torch.tensor(BPE(os.path.join(folder, "tokenizer.json")).encode(open(text).read()))
m = load_folder(folder); m.train()
opt = torch.optim.AdamW(m.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.0)
g = torch.Generator().manual_seed(5); T, B = 256, 8; times = []
for step in range(steps):
    t0 = time.time()
    for pg in opt.param_groups: pg["lr"] = 3e-4 * min(1.0, (step + 1) / 20)
    ix = torch.randint(0, tr.numel() - T - 1, (B,), generator=g)
    x = torch.stack([tr[i:i + T] for i in ix]); y = torch.stack([tr[i + 1:i + T + 1] for i in ix])
    loss = F.cross_entropy(m(x).view(-1, m.c["vocab_size"]), y.view(-1))
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    times.append(time.time() - t0)
s = times[2:]
print(json.dumps({"side": "torch", "steps_timed": len(s), "s_per_step": sum(s) / len(s), "tokens_per_s": 2048 * len(s) / sum(s)}))
PY
}

for r in $(seq "$ROUNDS"); do
    sqz_run | tee -a "$tmp/all"
    torch_run | tee -a "$tmp/all"
done
python3 - "$tmp/all" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
best = lambda side: max(r["tokens_per_s"] for r in rows if r["side"] == side)
a, b = best("sqz"), best("torch")
print(json.dumps({"sqz_tokens_per_s": a, "torch_tokens_per_s": b, "ratio": a / b}))
PY
