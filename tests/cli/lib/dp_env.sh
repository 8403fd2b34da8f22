# Sourced by the data-parallel CLI tests (tests/cli/dp.sh, dp_resume.sh), not a test itself
# (tests/run.sh runs only tests/cli/*.sh). Set DP_WHAT (the tests' name in skip lines) and
# DP_TRAIN_BYTES (how much of the training text to use) first. It skips the test (exit 0) when
# sqz-llama-14m or the merge texts are missing, when there is no mpirun, or when this sqz was
# built without Open MPI; otherwise it leaves SQZ, SHARED, BASE, TXT, a temporary folder $tmp
# (removed on exit) holding train.txt, and $MPI, the mpirun command line for the ranks.
SQZ=${SQZ:-build/sqz}
SHARED=${SQZ_SHARED:-../shared}
BASE=$SHARED/models/sqz-llama-14m
TXT=$SHARED/models/merge/shakespeare.train.txt
if [ ! -f "$BASE/model.safetensors" ] || [ ! -f "$TXT" ]; then
    echo "skip - sqz-llama-14m / merge texts missing (set SQZ_SHARED): $DP_WHAT"
    exit 0
fi
if ! command -v mpirun > /dev/null; then
    echo "skip - no mpirun (Open MPI): $DP_WHAT"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
head -c "$DP_TRAIN_BYTES" "$TXT" > "$tmp/train.txt"
if "$SQZ" finetune "$BASE" -f "$tmp/train.txt" -o "$tmp/x.gguf" --dp none --steps 1 --ctx 16 --batch 2 \
    --no-progress 2>&1 | grep -q "built without"; then
    echo "skip - this sqz was built without Open MPI (its --dp message says so): $DP_WHAT"
    exit 0
fi
MPI="mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -x ASAN_OPTIONS"
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 # Open MPI's own allocations
