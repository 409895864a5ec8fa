#!/usr/bin/env bash
# Stop the local test Slurm started by tests/slurm/start_local_slurm.sh: exactly the PIDs it
# recorded in $ONESHOT_SLURM_DIR/pids (default /tmp/oneshot-slurm/pids), in reverse start order
# (slurmd, slurmctld, slurmdbd, mariadbd, munged).  Nothing is killed by name.
# Installed packages and /etc/slurm/*.conf stay, so the next start takes a few seconds.
set -euo pipefail

STATE=${ONESHOT_SLURM_DIR:-/tmp/oneshot-slurm}
PIDS="$STATE/pids"
[ -f "$PIDS" ] || PIDS="$STATE/pids.partial"  # a start that failed half-way
if [ ! -f "$PIDS" ]; then
    echo "[stop_local_slurm] nothing to stop (no $STATE/pids)"
    exit 0
fi

# Reverse order: clients of a daemon go before the daemon.
tac "$PIDS" | while read -r name pid; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "[stop_local_slurm] $name ($pid) already gone"
        continue
    fi
    # Guard against PID reuse: only signal the process if it still is the daemon we started.
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    if [ "$comm" != "$name" ]; then
        echo "[stop_local_slurm] PID $pid is now '$comm', not $name: leaving it alone"
        continue
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 100); do  # up to 20 s
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "[stop_local_slurm] $name ($pid) ignored SIGTERM for 20 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "[stop_local_slurm] stopped $name ($pid)"
done
rm -f "$STATE/pids" "$STATE/pids.partial"
