#!/usr/bin/env bash
# The GPU tier in one call of at most ~9 minutes: training throughput (eager), the
# `cifar10-resnet18` bench (every method, random 10% and class:cat), then eager vs torch.compile
# throughput if the bench left time for it.
# Writes into OUTDIR: the leaderboard, the logs, the run records (no models) and summary.md/json
# (card, torch, the original's accuracy and training seconds, bench minutes, throughput).
#
#   benchmarks/gpu_tier.sh OUTDIR
#
# Environment (all optional):
#   UNLEARNKIT_DATA      the CIFAR-10 archive (default: ../shared/datasets/cifar10-jpeg.tar.gz
#                        beside the repository; e.g. .data/cifar10-jpeg.tar.gz on a GPU machine)
#   GPU_TIER_SEEDS       bench seeds (default 1)
#   GPU_TIER_BUDGET_S    wall-clock budget of the whole script in seconds (default 540)
#   GPU_TIER_METHODS     bench methods (default all)
#   GPU_TIER_WORKERS     bench --workers: processes running audits beside the one training/unlearning
#                        job at a time (default 6; the GPU host's CPU cores fit the audits' SVC fits)
#   GPU_TIER_COMPILE     1/0: run the torch.compile comparison (default 1; 0 in the CPU dry mode)
#   GPU_TIER_COMPILE_MIN_S    run that comparison only if this many seconds are left after the bench (default 90)
#   GPU_TIER_WORK        scratch folder for the bench store with its models (default: a temp folder)
#   GPU_TIER_ALLOW_CPU=1 dry mode for tests: no GPU needed, the digits preset with tiny settings
#   PYTHON               the interpreter (default: python, else python3)
#
# Needs torch and the project's dependencies installed (no internet): it runs the code of this
# checkout via PYTHONPATH=src, installs nothing, and stops each stage with `timeout` so the
# whole call ends within the budget, keeping whatever each stage wrote.
set -euo pipefail
export PYTHONUNBUFFERED=1

# ---------------------------------------------------------------- the GPU first
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$(command -v python || command -v python3 || echo python)}"
DRY="${GPU_TIER_ALLOW_CPU:-0}"
if [[ "$DRY" != "1" ]]; then
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "gpu_tier: no CUDA GPU visible to torch ($PY: torch.cuda.is_available() is False, or torch is missing); run it on a GPU machine (GPU_TIER_ALLOW_CPU=1 runs the CPU dry mode)" >&2
        exit 2
    fi
fi
if [[ $# -ne 1 ]]; then
    echo "usage: benchmarks/gpu_tier.sh OUTDIR" >&2
    exit 2
fi

START=$(date +%s)
BUDGET="${GPU_TIER_BUDGET_S:-540}"
SEEDS="${GPU_TIER_SEEDS:-1}"
WORKERS="${GPU_TIER_WORKERS:-$([[ "$DRY" == "1" ]] && echo 2 || echo 6)}"  # dry mode: a 2-core CI machine
METHODS="${GPU_TIER_METHODS:-all}"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
WORK="${GPU_TIER_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/unlearnkit-gpu-tier.XXXXXX")}"
mkdir -p "$WORK"
cd "$REPO"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export UNLEARNKIT_QUIET=1  # no progress bars (carriage-return noise) in any log

remaining() { echo $(( BUDGET - ($(date +%s) - START) )); }
log() { echo "[gpu_tier $(( $(date +%s) - START ))s] $*" | tee -a "$OUT/gpu_tier.log"; }

# Run "$@" for at most $1 seconds (SIGINT first, so Python unwinds; SIGKILL 10 s later),
# its output tee'd into $OUT/$2. Never fails the script: the exit status is logged instead.
stage() {
    local limit=$1 name=$2
    shift 2
    if (( limit < 5 )); then
        log "$name: skipped (no time left in the ${BUDGET}s budget)"
        echo "skipped" > "$OUT/$name.status"
        return 0
    fi
    log "$name: start (limit ${limit}s): $*"
    local rc=0
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log" || rc=$?
    case $rc in
        0) echo "ok" > "$OUT/$name.status" ;;
        124 | 130 | 137) echo "timed out after ${limit}s" > "$OUT/$name.status" ;;
        *) echo "failed (exit $rc)" > "$OUT/$name.status" ;;
    esac
    log "$name: $(cat "$OUT/$name.status")"
}

# ---------------------------------------------------------------- dependencies
missing=$("$PY" - <<'EOF'
import importlib.util
# import name -> pip name: what the bench imports (torchvision is only needed for torchvision dataset roots)
need = {"torch": "torch", "numpy": "numpy", "PIL": "pillow", "scipy": "scipy", "sklearn": "scikit-learn",
        "safetensors": "safetensors", "matplotlib": "matplotlib", "tqdm": "tqdm", "rich": "rich"}
print(" ".join(pip for mod, pip in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [[ -n "$missing" ]]; then
    echo "gpu_tier: missing Python packages: $missing (install them, e.g. pip install $missing, then rerun)" | tee "$OUT/summary.md" >&2
    exit 2
fi

if [[ "$DRY" == "1" ]]; then
    PRESET=digits
    DATA_ARGS=()
    FORGET="random:0.1"
    BENCH_SET=(--set train.epochs=2)
    THROUGHPUT=(--width 8 --batch 32 --steps 2 --precision fp32 --no-seed-style)
    COMPILE="${GPU_TIER_COMPILE:-0}"
else
    PRESET=cifar10-resnet18
    DATA="${UNLEARNKIT_DATA:-$REPO/../shared/datasets/cifar10-jpeg.tar.gz}"
    if [[ ! -f "$DATA" ]]; then
        echo "gpu_tier: dataset $DATA not found; set UNLEARNKIT_DATA=/path/to/cifar10-jpeg.tar.gz" | tee "$OUT/summary.md" >&2
        exit 2
    fi
    DATA_ARGS=(--data "$DATA")
    FORGET="random:0.1,class:cat"
    BENCH_SET=()
    THROUGHPUT=(--width 64 --batch 512 --steps 100 --precision auto --no-seed-style)
    COMPILE="${GPU_TIER_COMPILE:-1}"
fi

: > "$OUT/gpu_tier.log"
log "repo $REPO, out $OUT, work $WORK, budget ${BUDGET}s, preset $PRESET, seeds $SEEDS, methods $METHODS, workers $WORKERS"
{ nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1

# ---------------------------------------------------------------- stages
# Eager throughput first (seconds), then the bench (the result that matters: it may use all the
# time but the last 20 s, kept for copying and the summary), then the eager vs compile
# comparison if enough time is left (compiling ResNet-18 takes about a minute; the loop's model
# then reuses the compiled graph from inductor's cache).
stage $(( $(remaining) < 80 ? $(remaining) - 20 : 60 )) throughput_eager \
    "$PY" benchmarks/train_throughput.py "${THROUGHPUT[@]}" --json "$OUT/throughput_eager.json"

echo "$WORKERS" > "$OUT/bench_workers.txt"
BENCH_START=$(date +%s)
stage $(( $(remaining) - 20 )) bench \
    "$PY" -m unlearnkit bench --preset "$PRESET" "${DATA_ARGS[@]}" --methods "$METHODS" --forget "$FORGET" \
    --seeds "$SEEDS" --workers "$WORKERS" --out "$WORK/bench" "${BENCH_SET[@]}"
echo $(( $(date +%s) - BENCH_START )) > "$OUT/bench_seconds.txt"

if [[ "$COMPILE" == "1" ]]; then
    left=$(( $(remaining) - 15 ))
    (( left >= ${GPU_TIER_COMPILE_MIN_S:-90} )) || left=0  # not enough for a compile: logged as skipped
    stage "$left" throughput_compile \
        "$PY" benchmarks/train_throughput.py "${THROUGHPUT[@]}" --compile --json "$OUT/throughput_compile.json"
fi

# ---------------------------------------------------------------- outputs (no models)
if [[ -d "$WORK/bench" ]]; then
    mkdir -p "$OUT/bench"
    # Outside the store everything (leaderboard.*, plan/results, job logs); from the store only the
    # records (config, metrics, training log, audit summaries), never model weights or cached logits.
    (cd "$WORK/bench" && find . -type f \( -not -path './store/*' -o -name '*.json' -o -name '*.jsonl' -o -name '*.md' \) \
        -not -name '*.safetensors' -not -name '*.pt' -not -name '*.npz' -not -name '*.npy' \
        -print0 | xargs -0 -r cp --parents -t "$OUT/bench")
fi
"$PY" benchmarks/gpu_tier_summary.py "$OUT" "$PRESET" 2>&1 | tee -a "$OUT/gpu_tier.log" || log "summary: failed"
log "done in $(( $(date +%s) - START ))s; outputs in $OUT"
