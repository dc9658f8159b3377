#!/usr/bin/env bash
# Start a single-node Slurm cluster (munged + slurmctld + slurmd) on this machine, for CI and
# for trying workflow/profiles/slurm locally. Needs root (apt, /etc/slurm, daemons).
#   tools/slurm/start.sh            # state, logs and PIDs under $SOFTEQ_SLURM_DIR
#   tools/slurm/stop.sh             # kills exactly the daemons this script started
# If a cluster already answers `sinfo`, it is reused and nothing is recorded, so stop.sh then
# leaves it alone.
set -euo pipefail

STATE=${SOFTEQ_SLURM_DIR:-/tmp/softeq-slurm}
WAIT_S=${SOFTEQ_SLURM_WAIT_S:-60}   # bounded wait for the node to come up idle
CONF=/etc/slurm/slurm.conf          # fixed path: the executor's job step drops SLURM_CONF
MARK="# written by softeq tools/slurm/start.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOST=$(hostname -s)

log() { echo "[slurm/start] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A cluster that already answers is reused as is: we did not start it, so we must not stop it.
if command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1; then
    log "a Slurm cluster already answers sinfo: reusing it (nothing recorded to stop)"
    sinfo
    exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root (installs packages, writes $CONF, starts daemons)"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null
fi

mkdir -p "$STATE"/{state,spool,log,pids}
STATE=$(cd "$STATE" && pwd)   # slurm.conf needs absolute paths
# Daemons an earlier start left in this state dir no longer make a working cluster (sinfo did
# not answer): stop them, or the new ones would find their ports taken.
SOFTEQ_SLURM_DIR="$STATE" "$HERE/stop.sh"

# Anything started below is stopped again if a later step fails, so a failed start leaves no
# half-running cluster behind.
trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed: stopping what was started";
      SOFTEQ_SLURM_DIR="$STATE" "$HERE/stop.sh" || true; fi' EXIT

# --- munge: slurm authenticates every RPC with it -------------------------------------------
mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
# munged refuses a key that others can read or that it does not own
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
    log "munged already running: reusing it"
else
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    for _ in $(seq 1 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    [ -s /run/munge/munged.pid ] || die "munged did not write its PID file"
    cp /run/munge/munged.pid "$STATE/pids/munged.pid"
fi

# --- slurm.conf -------------------------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(( $(free -m | awk '/^Mem:/{print $2}') * 85 / 100 ))
# DefMemPerCPU: without a default, a job without --mem takes the whole node's memory and jobs
# then run one at a time.
DEF_MEM=$(( MEM_MB / CPUS ))
cat > "$STATE/slurm.conf" <<CONF
$MARK
ClusterName=softeq
SlurmctldHost=$HOST
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# no cgroups needed in a container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# accounting off: job status comes from squeue (profile: slurm-status-command: squeue)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# keep finished jobs visible to squeue for 10 min; the slurm executor falls back to sacct
# (which hangs without accounting) when MinJobAge < 3 x its first status-check delay
MinJobAge=600
DefMemPerCPU=$DEF_MEM
# no Gres: the node has no GPUs to schedule (a --gpus job would pend forever)
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

# A slurm.conf that is not ours is kept aside; stop.sh puts it back.
mkdir -p /etc/slurm
if [ -e "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
    log "keeping the existing $CONF as $STATE/slurm.conf.orig"
    cp -a "$CONF" "$STATE/slurm.conf.orig"
fi
# a copy, not a symlink: it stays valid if the state dir is removed
cp "$STATE/slurm.conf" "$CONF"

# --- daemons ----------------------------------------------------------------------------------
# Both daemonize themselves (detached from this shell) and write their PID files.
# -c: start without old job state, so stale jobs from an earlier run do not come back.
rm -f "$STATE/slurmctld.pid" "$STATE/slurmd.pid"
/usr/sbin/slurmctld -c -f "$CONF"
/usr/sbin/slurmd -f "$CONF"
for d in slurmctld slurmd; do
    for _ in $(seq 1 50); do [ -s "$STATE/$d.pid" ] && break; sleep 0.1; done
    [ -s "$STATE/$d.pid" ] || die "$d did not write its PID file; see $STATE/log/$d.log"
    cp "$STATE/$d.pid" "$STATE/pids/$d.pid"
done

# --- wait for the node --------------------------------------------------------------------------
deadline=$(( SECONDS + WAIT_S ))
until [ "$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1)" = idle ]; do
    if [ $SECONDS -ge $deadline ]; then
        sinfo -N -l 2>&1 || true
        tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" 2>&1 || true
        die "node $HOST not idle after ${WAIT_S}s (logs in $STATE/log)"
    fi
    sleep 1
done
log "cluster up: node $HOST idle, ${CPUS} CPUs, ${MEM_MB} MB; state in $STATE"
sinfo
