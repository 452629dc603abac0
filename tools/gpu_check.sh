#!/usr/bin/env bash
# distill's GPU training paths on a lent GPU machine, in one device call of at most
# 8 minutes: SFT through TRL + PEFT (the baseline) and through Unsloth in 16-bit and
# 4-bit, a DPO and a GKD pass, and, time allowing, TRL 4-bit and Unsloth DPO/GKD. Each
# run calls distill's own train_adapter / train_dpo / train_gkd (tools/gpu_check.py) in
# a process of its own, under its own time limit, on a random-weight student of
# SmolLM2-135M's shape (and a SmolLM2-360M-shaped GKD teacher) made on the machine:
# nothing is downloaded. Results: $OUT/gpu_check.json (per run: backend, precision,
# steps, tokens/s, peak GPU memory, wall seconds, ok or the error's last line) and
# $OUT/gpu_check.log (everything printed).
#
# Run from the repository root on the device machine, with the wheels of
# tools/gpu_wheels.txt in .whl/ (made here by tools/gpu_wheels.sh) carried:
#   run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=560)
# Settings (environment): GPU_CHECK_BUDGET_S (whole script, default 450),
# GPU_CHECK_RUNS (names, default all, in tools/gpu_check.py's order), GPU_CHECK_WORK
# (default /tmp/gpu_check), GPU_CHECK_SITE (where the wheels go, default /tmp/site).
set -uo pipefail

T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-450}
RESERVE=15 # seconds kept for the last merge
MIN_S=40   # a run gets at least this much, or is skipped
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
SITE=${GPU_CHECK_SITE:-/tmp/site}
OUT=${OUT:-$WORK/out}
LOG=$OUT/gpu_check.log
PY=(python3 "$REPO/tools/gpu_check.py")

rm -rf "$WORK"
mkdir -p "$OUT" "$WORK/results" "$WORK/logs"
: >"$LOG"
: >"$WORK/runs.tsv"

elapsed() { echo $(($(date +%s) - T0)); }
log() { echo "[$(date +%T) +$(elapsed)s] $*" | tee -a "$LOG"; }

# A run's limit: its own, cut to what the budget has left; `step NAME LIMIT CMD...`
# runs CMD under that limit (output to the log), records name, exit code, wall seconds
# and limit in runs.tsv, and merges the results so far into $OUT/gpu_check.json.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - $(elapsed) - RESERVE))
    if ((left < MIN_S)); then
        log "skip $name: $left s of the $BUDGET s budget left"
        printf '%s\tskipped\tonly %s s of the %s s budget were left\t0\n' "$name" "$left" "$BUDGET" >>"$WORK/runs.tsv"
        return 1
    fi
    ((limit > left)) && limit=$left
    log "start $name (limit $limit s)"
    local t1 t2 rc
    t1=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
    rc=$?
    t2=$(date +%s.%N)
    {
        echo "----- $name (exit $rc) -----"
        cat "$WORK/logs/$name.log"
    } >>"$LOG"
    local wall
    wall=$(awk "BEGIN {printf \"%.1f\", $t2 - $t1}")
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$wall" "$limit" >>"$WORK/runs.tsv"
    log "end $name: exit $rc, $wall s; $(tail -n 1 "$WORK/logs/$name.log" | cut -c1-300)"
    "${PY[@]}" merge "$WORK" "$OUT/gpu_check.json" >/dev/null 2>>"$LOG"
    return $rc
}

log "repo $REPO, work $WORK, out $OUT, budget $BUDGET s"
timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$WORK/gpu.txt" 2>&1
log "gpu: $(cat "$WORK/gpu.txt")"

# Nothing may reach the network; Unsloth's statistics ping and compile cache stay off it
# and out of the repository.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME="$WORK/hf"
export UNSLOTH_DISABLE_STATISTICS=1 UNSLOTH_COMPILE_LOCATION="$WORK/unsloth_compiled_cache"
export TRITON_CACHE_DIR="$WORK/triton" TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1 DISTILL_PROGRESS_EVERY=10

# (a) The carried wheels, installed the README's way, then distill from this tree.
shopt -s nullglob
wheels=("$REPO"/.whl/*.whl)
if ((${#wheels[@]} == 0)); then
    log "no wheels in $REPO/.whl: carry .whl (tools/gpu_wheels.sh makes it)"
fi
step install 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "${wheels[@]}"
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$WORK" || exit 1 # Unsloth and TRL write caches and outputs beside them

# (b) The student (and GKD's teacher) with random weights, saved to $WORK/models.
if step models 120 "${PY[@]}" models "$WORK/models"; then
    # (c) distill's passes, one process each.
    for name in ${GPU_CHECK_RUNS:-$("${PY[@]}" names)}; do
        case $name in
            sft-unsloth-16bit) limit=150 ;;
            *unsloth*) limit=120 ;;
            gkd-*) limit=100 ;;
            *) limit=90 ;;
        esac
        step "$name" "$limit" "${PY[@]}" run "$name" "$WORK/models" "$WORK/results/$name.json"
    done
else
    log "the models could not be made: no training run (see models in the log)"
fi

# (d) $OUT/gpu_check.json, and a table of it on stdout.
"${PY[@]}" merge "$WORK" "$OUT/gpu_check.json" 2>>"$LOG" | tee -a "$LOG"
log "done in $(elapsed) s"
