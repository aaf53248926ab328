#!/usr/bin/env bash
# A one-node Slurm cluster on localhost for the tests and for trying the `local` system profile:
#   slurm/local/cluster.sh up      install (Debian packages) and start it; idempotent
#   slurm/local/cluster.sh down    stop it
#   slurm/local/cluster.sh env     print the variables that point Slurm's commands at it
# Everything lives under $SHARDSWEEP_SLURM_DIR (default /tmp/shardsweep-slurm); nothing in /etc
# is touched. Needs root (slurmd starts jobs as their owner), as on a CI machine.
set -euo pipefail

DIR=${SHARDSWEEP_SLURM_DIR:-/tmp/shardsweep-slurm}
CPUS=${SHARDSWEEP_SLURM_CPUS:-16}     # more than the cores, so several ranks share them
PACKAGES=(munge slurmctld slurmd slurm-client)
log() { echo "[slurm-local] $*" >&2; }
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    sudo_ apt-get update -qq
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

configure() {
  mkdir -p "$DIR"/{munge,spool/ctld,spool/d,log}
  chmod 700 "$DIR/munge"
  # A private munged: Debian's paths refuse to run as root ("Logfile is insecure").
  [ -f "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$DIR/munge/munge.key"; }
  cat > "$DIR/cgroup.conf" <<CONF
# Containers have no systemd cgroup hierarchy; slurmd loads a cgroup plugin regardless.
CgroupPlugin=cgroup/v1
CONF
  cat > "$DIR/slurm.conf" <<CONF
ClusterName=shardsweep-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${SHARDSWEEP_SLURM_PORT:-16817}
SlurmdPort=$(( ${SHARDSWEEP_SLURM_PORT:-16817} + 1 ))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Declared CPUs exceed the real cores: let the declaration win instead of draining the node.
SlurmdParameters=config_overrides
# No waiting in tests: start batch jobs at once, kill jobs whose dependency failed, and reject
# requests the partition cannot satisfy instead of leaving them pending forever.
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
EnforcePartLimits=ALL
# Finished jobs stay visible to scontrol (no accounting database here).
MinJobAge=86400
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
KillWait=5
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() {
  install
  configure
  export SLURM_CONF="$DIR/slurm.conf"
  # The daemons outlive this script: they must not inherit its open files (a caller's lock
  # file would stay locked for as long as the cluster runs).
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ] && eval "exec $fd>&-" 2>/dev/null || true
  done
  running "$DIR/munge/munged.pid" || munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
      --log-file="$DIR/munge/munged.log" --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed" --force
  running "$DIR/slurmctld.pid" || slurmctld -f "$SLURM_CONF"
  running "$DIR/slurmd.pid" || slurmd -f "$SLURM_CONF" -N localhost
  for _ in $(seq 1 100); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
      log "up: SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
    sleep 0.2
  done
  log "the node did not become idle; logs are in $DIR/log"
  sinfo -N -l >&2 || true
  tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
  return 1
}

down() {
  for pid in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    running "$pid" && kill "$(cat "$pid")" || true
  done
  log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
