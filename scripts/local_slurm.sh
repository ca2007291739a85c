#!/usr/bin/env bash
# A one-node Slurm 22.05 cluster with accounting on this machine, for the cluster tests and CI.
#
#   bash scripts/local_slurm.sh start   install Debian's packages when missing, write the configuration, start
#                                       munged, MariaDB, slurmdbd, slurmctld and slurmd (as root, no systemd)
#   bash scripts/local_slurm.sh install only install Debian's packages when missing (CI does it beside `make setup`)
#   bash scripts/local_slurm.sh stop    cancel its jobs, stop every daemon it started (by its PID file)
#   bash scripts/local_slurm.sh status  the daemons and `sinfo`
#   bash scripts/local_slurm.sh conf    print the path of its slurm.conf (export SLURM_CONF=$(... conf))
#
# Everything lives under $LOCAL_SLURM_DIR (default /tmp/moco-bench-slurm): configuration, state, spool, logs,
# PID files and the accounting database; nothing under /etc is changed (munged serves its default socket). The clients find the
# cluster through SLURM_CONF (the tests look there by themselves). Ports: slurmctld 6817, slurmd 6818,
# slurmdbd 6819 (Slurm's defaults) and MariaDB $LOCAL_SLURM_DB_PORT (default 16819), all on 127.0.0.1.
# Facts of the setup: ProctrackType=proctrack/linuxproc and TaskPlugin=task/none (no cgroups),
# select/cons_tres with CR_Core_Memory and a DefMemPerCPU of the node's memory / CPUs (without it one job
# takes the whole node's memory and array tasks run one at a time), JobRequeue=1, no GPUs (a GRES request is
# refused, as on a CPU-only partition).
set -euo pipefail

DIR=${LOCAL_SLURM_DIR:-/tmp/moco-bench-slurm}
DB_PORT=${LOCAL_SLURM_DB_PORT:-16819}
CONF=$DIR/etc/slurm.conf
CLUSTER=mocobench
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
export SLURM_CONF=$CONF

say() { echo "[local-slurm] $*"; }
die() { say "error: $*" >&2; exit 1; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root (apt-get)"
  say "installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  # policy-rc.d keeps the packages' own init scripts from starting daemons outside $DIR
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pid_of() { [ -f "$DIR/run/$1.pid" ] && cat "$DIR/run/$1.pid" 2>/dev/null || true; }
running() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  while [ $SECONDS -lt $end ]; do timeout 5 "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "$what did not come up in ${secs}s; see $DIR/log/"
}

write_config() {
  local node cpus mem host
  host=$(hostname -s)
  node=$(slurmd -C | head -1)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$((mem * 9 / 10))  # leave some for the daemons
  rm -rf "$DIR/state" "$DIR/spool"  # a fresh cluster each start: no jobs of an earlier one come back
  mkdir -p "$DIR"/{etc,state,spool,log,run,munge,mysql}
  cat >"$CONF" <<EOF
# written by scripts/local_slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
JobRequeue=1
ReturnToService=2
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/etc/slurmdbd.conf" <<EOF
# written by scripts/local_slurm.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/etc/slurmdbd.conf"
}

start_munge() {
  # Slurm's clients talk to munged on its default socket: a munged already serving it is used as it is
  if timeout 5 munge -n >/dev/null 2>&1; then
    say "munged already running, used as it is (not stopped by stop)"; rm -f "$DIR/run/munged.pid"; return 0
  fi
  [ -s /etc/munge/munge.key ] || { say "creating /etc/munge/munge.key"; mungekey --create; }
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
  chown munge:munge "$DIR/munge" && chmod 700 "$DIR/munge"
  runuser -u munge -- munged --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
    --seed-file="$DIR/munge/munged.seed" --force
  ln -sf "$DIR/munge/munged.pid" "$DIR/run/munged.pid"
  wait_for 10 munged munge -n
}

start_mariadb() {
  chown mysql:mysql "$DIR/mysql"
  if [ ! -d "$DIR/mysql/mysql" ]; then
    mariadb-install-db --datadir="$DIR/mysql" --user=mysql --auth-root-authentication-method=socket \
      --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $DIR/log/"
  fi
  touch "$DIR/log/mariadb.log" && chown mysql:mysql "$DIR/log/mariadb.log"
  chown mysql:mysql "$DIR/run"
  mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql" --socket="$DIR/run/mysqld.sock" \
    --pid-file="$DIR/run/mariadb.pid" --bind-address=127.0.0.1 --port="$DB_PORT" \
    --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=32M --skip-name-resolve >/dev/null 2>&1 &
  wait_for 30 MariaDB mariadb --no-defaults -S "$DIR/run/mysqld.sock" -u root -e "select 1"
  chown root:root "$DIR/run"
  mariadb --no-defaults -S "$DIR/run/mysqld.sock" -u root -e \
    "DROP DATABASE IF EXISTS slurm_acct_db;
     CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
     GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

start() {
  install_packages
  if running slurmctld || pgrep -x slurmctld >/dev/null; then
    die "a slurmctld is already running on this machine (stop it first: bash $0 stop)"
  fi
  local t0=$SECONDS
  write_config
  start_munge
  start_mariadb
  slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
  slurmctld
  wait_for 30 slurmctld scontrol ping
  slurmd
  wait_for 30 "the node" bash -c "sinfo -h -o %T | grep -qE '^(idle|mixed|allocated)'"
  say "up in $((SECONDS - t0))s: $(sinfo -h -o '%P %D %c CPUs %m MB %T' | head -1); SLURM_CONF=$CONF"
}

stop_pid() {  # stop_pid NAME: SIGTERM by PID file, SIGKILL after 20 s
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  say "$1 ($pid) did not stop in 20 s: SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  [ -d "$DIR/run" ] || { say "nothing to stop ($DIR)"; return 0; }
  if running slurmctld; then
    local jobs; jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      say "cancelling job(s) $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  for d in slurmd slurmctld slurmdbd mariadb munged; do stop_pid "$d"; done
  say "stopped"
}

status() {
  for d in munged mariadb slurmdbd slurmctld slurmd; do
    if running "$d"; then echo "$d: running (pid $(pid_of "$d"))"; else echo "$d: not running"; fi
  done
  running slurmctld && sinfo || true
}

case "${1:-}" in
  start) start ;;
  install) install_packages ;;
  stop) stop ;;
  status) status ;;
  conf) echo "$CONF" ;;
  *) echo "usage: bash $0 start|install|stop|status|conf" >&2; exit 2 ;;
esac
