#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for the workflow's SLURM integration test.
#
# Installs Debian's slurmctld, slurmd and munge (apt) when they are missing, writes a one-node
# slurm.conf (this host only, on 127.0.0.1, no cgroups, no accounting database), starts munged,
# slurmctld and slurmd as plain daemons (no systemd), and waits until the node is idle and a
# trivial job has run. Idempotent: when the cluster is already up it checks it and returns.
# Needs root on Debian/Ubuntu. Exit status 0 means SLURM is usable; anything else prints why.
#
#   tests/slurm/start_slurm.sh            # at most START_SLURM_TIMEOUT seconds (default 300)
set -euo pipefail

if [[ -z "${START_SLURM_INNER:-}" ]]; then
    # One hard limit on everything below (apt, daemons, waits).
    export START_SLURM_INNER=1
    limit="${START_SLURM_TIMEOUT:-300}"
    if timeout --kill-after=10 "$limit" "$0" "$@"; then
        exit 0
    else
        status=$?
    fi
    [[ $status -eq 124 || $status -eq 137 ]] && echo "start_slurm: error: SLURM did not come up within ${limit} s" >&2
    exit "$status"
fi

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
NODE="$(hostname -s)"
PARTITION=debug
GPU_PARTITION=gpu

say() { echo "start_slurm: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1; }

# slurmd answering for itself (sinfo alone can show a dead slurmd as idle for a while).
slurmd_up() { scontrol show slurmd >/dev/null 2>&1; }

trivial_job() {
    local out
    out="$(timeout 60 srun -N 1 -n 1 -t 1 echo slurm-ok 2>&1)" || return 1
    [[ "$out" == *slurm-ok* ]]
}

cluster_ready() {
    command -v sinfo >/dev/null 2>&1 || return 1
    scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
    slurmd_up || return 1
    case "$(node_state)" in
        idle | mixed | allocated | completing) trivial_job ;;
        *) return 1 ;;
    esac
}

if [[ $(id -u) -ne 0 ]]; then
    if cluster_ready; then
        say "SLURM is up (not root: using it as it is configured)"
        exit 0
    fi
    die "SLURM is not running here and installing it needs root (run as root, or start SLURM yourself)"
fi

# ------------------------------------------------------------------ packages
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script installs SLURM on Debian/Ubuntu only"
    say "installing slurmctld, slurmd, munge (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends slurmctld slurmd munge slurm-client >/dev/null \
        || die "apt-get install slurmctld slurmd munge failed"
fi

# ------------------------------------------------------------------ munge
if ! (munge -n </dev/null | unmunge >/dev/null) 2>/dev/null; then
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do
        (munge -n </dev/null | unmunge >/dev/null) 2>/dev/null && break
        sleep 0.2
    done
    (munge -n </dev/null | unmunge >/dev/null) 2>/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# ------------------------------------------------------------------ configuration
# RealMemory must not exceed what slurmd detects, or the node is drained.
detected="$(slurmd -C | head -n 1)"
cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$detected")"
memory="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$detected")"
[[ -n "$cpus" && -n "$memory" ]] || die "cannot read CPUs and RealMemory from 'slurmd -C': $detected"

install -d "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
new_conf="$(mktemp)"
cat >"$new_conf" <<EOF
# One-node test cluster written by tests/slurm/start_slurm.sh.
ClusterName=genedag
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: plain process tracking, no task containment, no accounting.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 30 minutes (there is no sacct here).
MinJobAge=1800
KillWait=10
# One GPU that is only a number (its device file is /dev/null): jobs can ask for it
# with --gpus=1 and are scheduled one at a time, but they find no CUDA device.
GresTypes=gpu
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory} Gres=gpu:1 State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName=${GPU_PARTITION} Nodes=${NODE} MaxTime=INFINITE State=UP
EOF
echo "NodeName=${NODE} Name=gpu File=/dev/null Count=1" >"$new_conf.gres"
if cmp -s "$new_conf" "$CONF" && cmp -s "$new_conf.gres" "$CONF_DIR/gres.conf" && cluster_ready; then
    rm -f "$new_conf" "$new_conf.gres"
    say "SLURM is already up (node $NODE, partitions $PARTITION and $GPU_PARTITION)"
    exit 0
fi
if ! cmp -s "$new_conf" "$CONF" || ! cmp -s "$new_conf.gres" "$CONF_DIR/gres.conf"; then
    install -m 0644 "$new_conf" "$CONF"
    install -m 0644 "$new_conf.gres" "$CONF_DIR/gres.conf"
    # A changed configuration needs fresh daemons.
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            pid="$(cat "$pidfile")"
            kill "$pid"
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
        fi
    done
fi
rm -f "$new_conf" "$new_conf.gres"

# ------------------------------------------------------------------ daemons
running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! running /run/slurmctld.pid; then
    say "starting slurmctld"
    slurmctld
fi
for _ in $(seq 60); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 0.5
done
scontrol ping 2>/dev/null | grep -q 'is UP' || die "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"
if ! running /run/slurmd.pid; then
    say "starting slurmd"
    slurmd
fi

# ------------------------------------------------------------------ wait for the node
state=""
for _ in $(seq 120); do
    state="$(node_state)"
    if slurmd_up; then
        case "$state" in
            idle | mixed | allocated) break ;;
            down* | drain* | fail* | inval*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
    fi
    sleep 0.5
done
slurmd_up || die "slurmd does not answer (see $LOG_DIR/slurmd.log)"
case "$state" in
    idle | mixed | allocated) ;;
    *) die "node $NODE is '$state', not idle (see $LOG_DIR/slurmctld.log): $(sinfo -h -N -o '%N %T %E' 2>&1)" ;;
esac
trivial_job || die "a trivial srun job did not complete on node $NODE (see $LOG_DIR/slurmd.log)"
say "SLURM is up: node $NODE ($cpus CPUs, $memory MB, 1 GPU), partitions $PARTITION (default) and $GPU_PARTITION"
