#!/usr/bin/env bash
# CI step (after the tests): run the demo workflow through a real Slurm and report what Slurm saw.
#
#   .ci/slurm_demo.sh            (from anywhere; runs in the checkout that contains this script)
#
# 1. starts the local one-node Slurm (tests/slurm/start_local_slurm.sh; fake GPUs);
# 2. runs `snakemake --configfile config/demo_tiny.yaml --profile profiles/slurm-local` under
#    `timeout -s INT` (SIGINT makes Snakemake cancel its Slurm jobs; SIGTERM would wait for them),
#    with the CPU-stack environment variables exported so that every Slurm job inherits them;
# 3. prints the number of Slurm jobs submitted, their sacct states, and the wall time, and fails
#    unless Snakemake succeeded and every job is COMPLETED;
# 4. stops the Slurm daemons it started (also on failure).
# Knobs: PYTHON (default .venv/bin/python), SLURM_DEMO_TIMEOUT seconds (default 3600),
# SLURM_DEMO_CONFIG (default config/demo_tiny.yaml: the tiny-model demo on the paper's data, the one
# docs/slurm.md measured; `make demo`'s config/demo.yaml, the miniature world, also asks one fake GPU per
# train/evaluate job, but has not been run through Slurm), SLURM_DEMO_LOG (default slurm_demo.log).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
LIMIT=${SLURM_DEMO_TIMEOUT:-3600}
CONFIG=${SLURM_DEMO_CONFIG:-config/demo_tiny.yaml}
LOG=${SLURM_DEMO_LOG:-$REPO/slurm_demo.log}

[ -x "$PY" ] || { echo "slurm_demo: no Python at $PY (set PYTHON)" >&2; exit 2; }
[ -f "$CONFIG" ] || { echo "slurm_demo: no workflow config $CONFIG" >&2; exit 2; }

# CPU stack settings (docs: cpu-stack); sbatch --export=ALL hands them to every job.
export HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 DS_ACCELERATOR=cpu VLLM_ENABLE_V1_MULTIPROCESSING=0
export USER=${USER:-$(id -un)}           # the Slurm plugin's account check reads $USER
export PATH="$(dirname "$PY"):$PATH"    # `rlvr` and `torchrun` of the driver's venv, inside jobs too

t_start=$(date +%s.%N)
tests/slurm/start_local_slurm.sh
t_slurm=$(date +%s.%N)
trap 'tests/slurm/stop_local_slurm.sh' EXIT

echo "slurm_demo: snakemake --configfile $CONFIG --profile profiles/slurm-local (log: $LOG, limit ${LIMIT}s)"
set +e
timeout -s INT "$LIMIT" "$PY" -m snakemake --configfile "$CONFIG" --profile profiles/slurm-local >"$LOG" 2>&1
rc=$?
set -e
t_end=$(date +%s.%N)

ids=$(grep -oE 'has been submitted with SLURM jobid [0-9]+' "$LOG" | awk '{print $NF}' | paste -sd, -)
n_jobs=$(grep -cE 'has been submitted with SLURM jobid [0-9]+' "$LOG" || true)
n_local=$(grep -cE '^localrule ' "$LOG" || true)

echo "---------------------------------------------------------------- slurm_demo summary"
echo "snakemake exit status: $rc$([ "$rc" = 124 ] && echo ' (timed out)')"
echo "Slurm jobs submitted: $n_jobs   (local rules run by the driver: $n_local)"
bad=0
if [ -n "$ids" ]; then
    # Accounting is written asynchronously: wait until no job is in a non-final state.
    for _ in $(seq 1 60); do
        sacct -X -n -P -j "$ids" -o State | grep -qE '^(PENDING|RUNNING|COMPLETING|REQUEUED)' || break
        sleep 1
    done
    sacct -X -j "$ids" -o JobID,Partition,Account,AllocCPUS,Elapsed,State,ExitCode,AllocTRES%45,Comment%60
    echo "states:"
    sacct -X -n -P -j "$ids" -o State | sort | uniq -c
    bad=$(sacct -X -n -P -j "$ids" -o State | grep -cv '^COMPLETED$' || true)
    seen=$(sacct -X -n -P -j "$ids" -o JobIDRaw | wc -l)
    [ "$seen" = "$n_jobs" ] || { echo "sacct lists $seen of $n_jobs jobs"; bad=$((bad + 1)); }
fi
awk -v a="$t_start" -v b="$t_slurm" -v c="$t_end" \
    'BEGIN {printf "wall time: %.1f s total (Slurm start %.1f s, workflow %.1f s)\n", c-a, b-a, c-b}'

if [ "$rc" != 0 ]; then
    echo "slurm_demo: FAILED: snakemake exited $rc; last lines of $LOG:"
    tail -40 "$LOG"
    exit 1
fi
if [ "$n_jobs" = 0 ] || [ "$bad" != 0 ]; then
    echo "slurm_demo: FAILED: $n_jobs jobs submitted, $bad not COMPLETED (or missing from sacct)"
    exit 1
fi
echo "slurm_demo: OK: $n_jobs Slurm jobs, all COMPLETED"
