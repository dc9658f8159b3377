#!/usr/bin/env bash
# Stop the daemons that tools/slurm/start.sh started (their PIDs are in $SOFTEQ_SLURM_DIR/pids),
# and nothing else. Safe to run twice, or after a start that reused a running cluster.
set -euo pipefail

STATE=${SOFTEQ_SLURM_DIR:-/tmp/softeq-slurm}
log() { echo "[slurm/stop] $*" >&2; }

# slurmd first (it reports to slurmctld), munged last (both slurm daemons authenticate with it)
for d in slurmd slurmctld munged; do
    pidfile="$STATE/pids/$d.pid"
    [ -f "$pidfile" ] || continue
    pid=$(tr -dc 0-9 < "$pidfile")
    # The PID must still be that daemon: a recycled PID belongs to someone else.
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$d" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$d ($pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $d ($pid)"
    fi
    rm -f "$pidfile"
done

# put back a slurm.conf that start.sh had set aside
if [ -f "$STATE/slurm.conf.orig" ]; then
    cp -a "$STATE/slurm.conf.orig" /etc/slurm/slurm.conf
    rm -f "$STATE/slurm.conf.orig"
    log "restored the original /etc/slurm/slurm.conf"
fi
