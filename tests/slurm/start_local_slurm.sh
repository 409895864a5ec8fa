#!/usr/bin/env bash
# Start a real one-node Slurm cluster (with accounting) on this machine, for the `slurm` tests
# and .ci/slurm_demo.sh.  Debian 12, root, no systemd needed.
#
# What it does, in order:
#   1. installs munge + slurmctld/slurmd/slurm-client/slurmdbd + mariadb-server if missing
#      (apt-get install --no-install-recommends; ~22 packages, not the slurm-wlm metapackage);
#   2. writes /etc/slurm/{slurm,gres,slurmdbd}.conf for this host: one node with the machine's
#      memory and CPUs (at least one CPU per fake GPU, see below), two partitions `cpu` (default) and `gpu` on that node, and N fake GPUs
#      (gres gpu:<type>:N backed by character devices that behave like /dev/null) so GPU rules
#      can be scheduled.  The fake GPUs are scheduling tokens only: never run CUDA code on them;
#   3. starts munged, mariadbd, slurmdbd, slurmctld, slurmd (in this order) and waits until the
#      node is idle and `sacct` answers;
#   4. records the PIDs it started in $ONESHOT_SLURM_DIR/pids (stop_local_slurm.sh reads it).
#
# Environment knobs:
#   ONESHOT_SLURM_DIR       state/log folder (default /tmp/oneshot-slurm)
#   ONESHOT_SLURM_GPUS      number of fake GPUs on the node (default 8)
#   ONESHOT_SLURM_GPU_TYPE  gres type of the fake GPUs (default fakegpu; profiles/slurm-local
#                           uses it as gpu_model, so sbatch gets --gpus=fakegpu:N)
# Ports 6817-6819 and 3306 are used: only one such cluster per host.
set -euo pipefail

STATE=${ONESHOT_SLURM_DIR:-/tmp/oneshot-slurm}
NGPUS=${ONESHOT_SLURM_GPUS:-8}
GPU_TYPE=${ONESHOT_SLURM_GPU_TYPE:-fakegpu}
T0=$(date +%s.%N)

log() { echo "[start_local_slurm] $*"; }
die() { echo "[start_local_slurm] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"
[[ "$NGPUS" =~ ^[1-9][0-9]*$ ]] || die "ONESHOT_SLURM_GPUS must be a positive integer, got '$NGPUS'"

# --- already running? (idempotent) -----------------------------------------------------------
if [ -f "$STATE/pids" ]; then
    alive=1
    while read -r name pid; do
        kill -0 "$pid" 2>/dev/null || alive=0
    done <"$STATE/pids"
    if [ "$alive" = 1 ] && sinfo -h >/dev/null 2>&1; then
        log "already running (PIDs in $STATE/pids)"
        exit 0
    fi
    die "$STATE/pids exists but not every daemon in it is alive; run tests/slurm/stop_local_slurm.sh first"
fi

# --- 1. packages -------------------------------------------------------------------------------
PKGS="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    log "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    # postinst scripts try to start services; without systemd that fails harmlessly, but keep
    # them from starting anything with a policy-rc.d for the duration of the install.
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    apt_log=$(mktemp /tmp/slurm-apt.XXXXXX.log)
    apt_rc=0
    apt-get install -y -qq --no-install-recommends $missing >"$apt_log" 2>&1 || apt_rc=$?
    if [ "$policy_added" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ "$apt_rc" = 0 ] || { tail -20 "$apt_log" >&2; die "apt-get install failed (log: $apt_log)"; }
fi
for b in munged mariadbd slurmdbd slurmctld slurmd sbatch sacct; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found after install"
done
export PATH="/usr/sbin:$PATH"

mkdir -p "$STATE"/{ctld,spool,run} /etc/slurm
: >"$STATE/pids.partial"

# --- 2. configuration --------------------------------------------------------------------------
HOST=$(hostname -s)
TOTAL_MB=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
REAL_MB=$((TOTAL_MB - 1024))  # slurmd compares with total (not free) memory
# `slurmd -C` prints the node's real topology; keep its CPU/socket/core/thread fields.
NODE_HW=$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
[ -n "$NODE_HW" ] || die "slurmd -C printed no hardware description"
REAL_CPUS=$(nproc --all)
# An N-GPU job with --cpus-per-gpu=1 needs N CPUs. When the machine has fewer cores than fake
# GPUs, the node advertises N single-core CPUs and slurmd is told to trust slurm.conf
# (config_overrides). Nothing is pinned or enforced here (task/none), and the test profile runs
# at most 2 jobs at once, so this only lets such jobs be scheduled.
OVERRIDES=""
if [ "$NGPUS" -gt "$REAL_CPUS" ]; then
    NODE_HW="CPUs=$NGPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NGPUS ThreadsPerCore=1 "
    OVERRIDES="SlurmdParameters=config_overrides"
    log "advertising $NGPUS CPUs ($REAL_CPUS real) so that a $NGPUS-GPU job with 1 CPU per GPU fits"
fi

# Fake GPU devices: distinct character devices with /dev/null's numbers (1,3); gres.conf
# rejects the same file listed twice, and a gres without File= drains the node.
for i in $(seq 0 $((NGPUS - 1))); do
    dev=/dev/oneshot-fakegpu$i
    [ -c "$dev" ] || mknod -m 666 "$dev" c 1 3 || die "mknod $dev failed"
done

cat >/etc/slurm/slurm.conf <<EOF
# Written by oneshot-rlvr tests/slurm/start_local_slurm.sh: a one-node test cluster.
ClusterName=oneshot
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# No systemd/cgroups here: track processes by /proc, no task binding, no usage sampling.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a per-CPU default every job would take the whole node's memory and run alone.
DefMemPerCPU=500
ReturnToService=2
# Keep finished jobs visible to squeue for an hour (the profile's squeue status workaround).
MinJobAge=3600
KillWait=5
InactiveLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
# Store the job comment (the plugin writes rule_<rule>_wildcards_<...> there) for sacct -o Comment.
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
GresTypes=gpu
$OVERRIDES
NodeName=$HOST NodeAddr=127.0.0.1 ${NODE_HW}RealMemory=$REAL_MB Gres=gpu:$GPU_TYPE:$NGPUS State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST Default=NO MaxTime=INFINITE State=UP
EOF

{
    echo "# Written by oneshot-rlvr tests/slurm/start_local_slurm.sh: fake GPUs (scheduling tokens)."
    echo "AutoDetect=off"
    for i in $(seq 0 $((NGPUS - 1))); do
        echo "NodeName=$HOST Name=gpu Type=$GPU_TYPE File=/dev/oneshot-fakegpu$i"
    done
} >/etc/slurm/gres.conf

DB_PASS=oneshot-slurm-test
cat >/etc/slurm/slurmdbd.conf <<EOF
# Written by oneshot-rlvr tests/slurm/start_local_slurm.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 /etc/slurm/slurmdbd.conf  # slurmdbd refuses a world-readable file with a password

# --- 3. daemons, in order ----------------------------------------------------------------------
record() { echo "$1 $2" >>"$STATE/pids.partial"; }
wait_for() {  # wait_for <what> <seconds> <command...>
    local what=$1 secs=$2; shift 2
    local end=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || die "timed out after ${secs}s waiting for $what (logs in $STATE)"
        sleep 0.2
    done
}
pid_from() {  # pid_from <pidfile> <seconds>
    wait_for "$1" "$2" test -s "$1"
    cat "$1"
}

# munge (as user munge; it daemonises and writes its own pid file)
[ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null || \
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
rm -f /run/munge/munged.pid
runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
record munged "$(pid_from /run/munge/munged.pid 10)"
wait_for "munge to answer" 10 sh -c 'munge -n | unmunge'

# MariaDB (does not daemonise: setsid + background; datadir is initialised by the package)
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE/mariadb-install.log" 2>&1
rm -f /run/mysqld/mysqld.pid
setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
    --pid-file=/run/mysqld/mysqld.pid --bind-address=127.0.0.1 --innodb-buffer-pool-size=64M \
    --performance-schema=OFF >"$STATE/mariadb.log" 2>&1 </dev/null &
record mariadbd "$(pid_from /run/mysqld/mysqld.pid 30)"
wait_for "mariadb to answer" 30 mariadb -uroot -e 'SELECT 1'
mariadb -uroot <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

# Slurm daemons (each daemonises and writes the pid file named in its config)
rm -f "$STATE"/run/*.pid
slurmdbd
record slurmdbd "$(pid_from "$STATE/run/slurmdbd.pid" 20)"
wait_for "slurmdbd to answer" 30 sacctmgr -n show cluster
# -c: start from a clean controller state (no jobs left from an earlier start)
slurmctld -c
record slurmctld "$(pid_from "$STATE/run/slurmctld.pid" 20)"
slurmd -N "$HOST"
record slurmd "$(pid_from "$STATE/run/slurmd.pid" 20)"
mv "$STATE/pids.partial" "$STATE/pids"

node_idle() { sinfo -h -N -n "$HOST" -o %T | grep -qx idle; }
wait_for "node $HOST to become idle (see $STATE/slurmd.log)" 60 node_idle
# slurmctld registers the cluster, account root and user root in slurmdbd by itself.
wait_for "sacct to answer" 60 sacct -n -X
wait_for "user root to have an association" 60 sh -c 'sacctmgr -n -P show assoc user=root format=account | grep -q .'

T1=$(date +%s.%N)
log "ready in $(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b-a}') s: node $HOST, $(sinfo -h -N -n "$HOST" -o "%c CPUs, %m MB, %G" | head -1), partitions $(sinfo -h -o %P | tr '\n' ' ')"
log "PIDs: $(tr '\n' ' ' <"$STATE/pids")(in $STATE/pids)"
