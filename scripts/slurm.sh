#!/usr/bin/env bash
# A single-node Slurm cluster for the slurm executor's tests, from Debian 12's packages.
#
#   bash scripts/slurm.sh up       # install what is missing, configure, start, wait until ready
#   bash scripts/slurm.sh down     # stop (by pid) exactly the daemons that `up` started
#   bash scripts/slurm.sh status   # which of our daemons run, and what sinfo says
#
# Run as root on a Debian 12 machine without systemd. `up` installs (when missing)
# slurmctld slurmd slurm-client munge slurmdbd mariadb-server, then starts by hand: munged,
# mariadbd (a database in a folder of its own), slurmdbd (accounting: submitit learns about
# cancelled and timed-out jobs only through `sacct`), slurmctld and slurmd. It is idempotent: a
# second `up` only checks that everything is ready. It waits until the node is idle and `sacct`
# answers.
#
# Everything it writes lives under $MLEXP_SLURM_DIR (default /var/tmp/mlexp-slurm): configs,
# munge key and socket, database, spool, pid files and logs. Two things live outside it, and
# `down` removes both:
#   - /etc/slurm/slurm.conf, a symlink to our slurm.conf: that is where Slurm's clients (sbatch,
#     squeue, sacct, and so submitit) find the config. An existing file there that is not our
#     symlink is never overwritten: `up` stops and says so.
#   - a line for the short hostname in /etc/hosts, only when the hostname did not resolve.
# So `down` followed by `rm -rf "$MLEXP_SLURM_DIR"` leaves the machine as it was, Debian's
# packages aside. Ports 6817 (slurmctld), 6818 (slurmd), 6819 (slurmdbd) and 3306 (mariadbd)
# must be free. MLEXP_SLURM_DIR must be an absolute path whose parent folders every user may
# enter (munged and mariadbd run as their own users; jobs run as the submitting user).
set -euo pipefail

STATE="${MLEXP_SLURM_DIR:-/var/tmp/mlexp-slurm}"
case "$STATE" in
  /*) ;;
  *) echo "slurm.sh: error: MLEXP_SLURM_DIR must be an absolute path (got '$STATE')" >&2; exit 2 ;;
esac
CLUSTER="mlexp"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
CLIENT_CONF=/etc/slurm/slurm.conf
HOSTS_MARK="# added by pytest-mlexp scripts/slurm.sh"
READY_TIMEOUT_S="${MLEXP_SLURM_READY_TIMEOUT:-60}"

ETC="$STATE/etc"
RUN="$STATE/run"
LOG="$STATE/log"
SPOOL="$STATE/spool"
MUNGE="$STATE/munge"
DB="$STATE/db"
export SLURM_CONF="$ETC/slurm.conf"   # our own commands never depend on the /etc symlink

say() { echo "slurm.sh: $*"; }
die() { echo "slurm.sh: error: $*" >&2; exit 1; }

# The last lines of a daemon's log, for an error message.
log_tail() {
  local f="$1"
  if [ -s "$f" ]; then
    echo "---- last lines of $f ----" >&2
    tail -n 25 "$f" >&2
    echo "----" >&2
  else
    echo "(no log at $f)" >&2
  fi
}

# fail MESSAGE LOG... : say what failed, show the logs' tails, exit 1.
fail() {
  local msg="$1"
  shift
  echo "slurm.sh: error: $msg" >&2
  local f
  for f in "$@"; do log_tail "$f"; done
  exit 1
}

# The pid in pid file $1 when that process is alive and its command name is $2, else nothing.
# The name check guards against a stale pid file whose number was reused by something else.
live_pid() {
  local file="$1" name="$2" pid comm
  [ -s "$file" ] || return 0
  pid="$(tr -dc '0-9' <"$file")"
  [ -n "$pid" ] || return 0
  comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
  [ "$comm" = "$name" ] || return 0
  # A killed daemon stays a zombie until it is reaped: that is not running.
  [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
  echo "$pid"
  return 0
}

# Daemon table: name, pid file, log file.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
pid_file() {
  case "$1" in
    munged) echo "$MUNGE/munged.pid" ;; # munged runs as munge: its pid file sits in its folder
    mariadbd) echo "$RUN/mariadbd.pid" ;;
    *) echo "$RUN/$1.pid" ;;
  esac
}
log_file() {
  case "$1" in
    munged) echo "$MUNGE/munged.log" ;;
    mariadbd) echo "$LOG/mariadbd.log" ;;
    *) echo "$LOG/$1.log" ;;
  esac
}
running() { [ -n "$(live_pid "$(pid_file "$1")" "$1")" ]; }

# A Slurm client command that cannot hang this script (a client waits long for a dead daemon).
client() { timeout 15 "$@"; }

port_in_use() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    ss -Htln "sport = :$port" 2>/dev/null | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

need_port() {
  local port="$1" who="$2"
  if port_in_use "$port"; then
    local detail=""
    command -v ss >/dev/null 2>&1 && detail="$(ss -Htlnp "sport = :$port" 2>/dev/null | head -n 3)"
    die "port $port (needed by $who) is already in use by a process this script did not start:
$detail
Stop that process (or run this on a machine without another Slurm/MariaDB), then run 'up' again."
  fi
}

# ---------------------------------------------------------------------------------------------
# Installing

missing_packages() {
  local p status
  for p in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || echo "$p"
  done
}

install_packages() {
  local missing
  missing="$(missing_packages | tr '\n' ' ')"
  [ -n "${missing// /}" ] || return 0
  command -v apt-get >/dev/null 2>&1 || die "missing packages ($missing) and no apt-get: this script needs Debian 12"
  say "installing $missing(Debian's packages, no recommends)"
  # Keep the packages' own init scripts from starting system-wide daemons during install
  # (they would take our ports): a policy-rc.d that denies every start, only while we install.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from pytest-mlexp scripts/slurm.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local apt=(apt-get -q -o DPkg::Lock::Timeout=600)
  local ok=1
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >"$LOG/apt.log" 2>&1 || ok=0
  if [ "$ok" = 1 ]; then
    # shellcheck disable=SC2086  # $missing is a list of package names
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends $missing \
      >>"$LOG/apt.log" 2>&1 || ok=0
  fi
  [ "$made_policy" = 1 ] && rm -f "$policy"
  [ "$ok" = 1 ] || fail "installing $missing failed" "$LOG/apt.log"
  missing="$(missing_packages | tr '\n' ' ')"
  [ -z "${missing// /}" ] || fail "still missing after apt-get install: $missing" "$LOG/apt.log"
}

# ---------------------------------------------------------------------------------------------
# Configuring

short_host() { hostname -s 2>/dev/null || hostname; }

ensure_hostname_resolves() {
  local h
  h="$(short_host)"
  [ -n "$h" ] || die "this machine has no hostname"
  if ! getent hosts "$h" >/dev/null 2>&1; then
    say "the short hostname '$h' does not resolve: adding it to /etc/hosts"
    printf '127.0.0.1 %s %s\n' "$h" "$HOSTS_MARK" >>/etc/hosts
  fi
}

our_client_conf() { [ -L "$CLIENT_CONF" ] && [ "$(readlink "$CLIENT_CONF")" = "$ETC/slurm.conf" ]; }

check_client_conf() {
  our_client_conf && return 0
  if [ -e "$CLIENT_CONF" ] || [ -L "$CLIENT_CONF" ]; then
    die "$CLIENT_CONF exists and is not this script's symlink to $ETC/slurm.conf.
Another Slurm set-up on this machine, or this script run before with another MLEXP_SLURM_DIR
(then run 'down' with that MLEXP_SLURM_DIR). Move that file away if it is a leftover."
  fi
}

ensure_client_conf_link() {
  our_client_conf && return 0
  check_client_conf
  mkdir -p "$(dirname "$CLIENT_CONF")"
  ln -s "$ETC/slurm.conf" "$CLIENT_CONF"
}

make_dirs() {
  mkdir -p "$STATE" "$ETC" "$RUN" "$LOG" "$SPOOL/ctld" "$SPOOL/d" "$MUNGE" "$DB"
  # Other users (munge, mysql, and the users whose jobs run) must reach into the folder.
  chmod 755 "$STATE" "$ETC" "$RUN" "$LOG" "$SPOOL"
  # munged wants its socket's folder open to all (execute) and writable by munge only; the key
  # inside is mode 600.
  chown munge:munge "$MUNGE"
  chmod 755 "$MUNGE"
  chown mysql:mysql "$DB"
  chmod 700 "$DB"
}

# The DB password for slurmdbd: random, made once, readable by root only.
db_password() {
  local f="$ETC/db.secret"
  if [ ! -s "$f" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f")
  fi
  cat "$f"
}

# The state folder may come from a machine with another hostname (a copied disk, a renamed
# machine): slurmctld's saved node and job state would name a node that no longer exists.
forget_state_of_another_host() {
  local host
  host="$(short_host)"
  if [ -s "$ETC/host" ] && [ "$(cat "$ETC/host")" != "$host" ]; then
    say "the state in $STATE was made on host '$(cat "$ETC/host")': starting the queue afresh"
    rm -rf "${SPOOL:?}/ctld" "${SPOOL:?}/d"
    mkdir -p "$SPOOL/ctld" "$SPOOL/d"
  fi
  echo "$host" >"$ETC/host"
}

write_configs() {
  local host node_line cpus mem
  host="$(short_host)"
  # What slurmd sees on this machine (CPUs, sockets, cores, threads, memory), so that the node
  # is never drained for claiming more than it has.
  node_line="$(slurmd -C 2>/dev/null | head -n 1 || true)"
  cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")"
  mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")"
  [ -n "$cpus" ] || cpus="$(nproc)"
  [ -n "$mem" ] || mem="$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)"
  local geometry
  geometry="$(grep -o 'Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' \
    <<<"$node_line" || true)"

  cat >"$ETC/slurm.conf.new" <<EOF
# Written by pytest-mlexp scripts/slurm.sh: a single-node cluster for tests. Clients read it
# through the symlink $CLIENT_CONF.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE/munge.socket.2
# Our munged's socket: AuthInfo for slurmctld/slurmd/clients, AccountingStoragePass for every
# connection to slurmdbd (sacct, sacctmgr, slurmctld): without it those use /run/munge.
AccountingStoragePass=$MUNGE/munge.socket.2
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no systemd here.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
# CPUs and memory are consumed per job; a job without --mem gets its share per CPU.
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem / cpus))
# Accounting through slurmdbd: submitit reads job states with sacct.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
# Fast scheduling and fast kills, for tests.
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus $geometry RealMemory=$mem State=UNKNOWN
# A job in 'urgent' cancels (PREEMPTED) jobs of 'debug' when it needs their CPUs: how the
# executor's tests see a real preemption.
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=2
EOF
  mv "$ETC/slurm.conf.new" "$ETC/slurm.conf"
  chmod 644 "$ETC/slurm.conf"

  # slurmdbd reads slurmdbd.conf from the folder of SLURM_CONF; it holds the DB password.
  (
    umask 077
    cat >"$ETC/slurmdbd.conf.new" <<EOF
# Written by pytest-mlexp scripts/slurm.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE/munge.socket.2
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=$(db_password)
StorageLoc=slurm_acct_db
EOF
  )
  mv "$ETC/slurmdbd.conf.new" "$ETC/slurmdbd.conf"
  chmod 600 "$ETC/slurmdbd.conf"
}

# ---------------------------------------------------------------------------------------------
# Starting

start_munged() {
  running munged && return 0
  if [ ! -s "$MUNGE/munge.key" ]; then
    runuser -u munge -- mungekey --create --keyfile="$MUNGE/munge.key" >>"$LOG/munged.start.log" 2>&1 \
      || fail "could not create a munge key" "$LOG/munged.start.log"
  fi
  rm -f "$MUNGE/munge.socket.2"
  runuser -u munge -- munged \
    --key-file="$MUNGE/munge.key" \
    --socket="$MUNGE/munge.socket.2" \
    --pid-file="$MUNGE/munged.pid" \
    --log-file="$MUNGE/munged.log" \
    --seed-file="$MUNGE/munged.seed" >>"$LOG/munged.start.log" 2>&1 </dev/null 9>&- \
    || fail "munged did not start" "$LOG/munged.start.log" "$MUNGE/munged.log"
  local end=$((SECONDS + 5))
  while [ "$SECONDS" -lt "$end" ]; do
    [ -S "$MUNGE/munge.socket.2" ] && [ -s "$MUNGE/munged.pid" ] && break
    sleep 0.1
  done
  running munged || fail "munged did not start" "$LOG/munged.start.log" "$MUNGE/munged.log"
}

mysql_root() { mariadb --no-defaults --socket="$DB/mysqld.sock" -u root; }

start_mariadbd() {
  running mariadbd && return 0
  need_port 3306 mariadbd
  touch "$LOG/mariadbd.log"
  chown mysql:mysql "$LOG/mariadbd.log"
  if [ ! -d "$DB/data/mysql" ]; then
    say "creating the accounting database in $DB/data"
    mariadb-install-db --no-defaults --datadir="$DB/data" --user=mysql \
      --auth-root-authentication-method=socket --skip-test-db >>"$LOG/mariadbd.log" 2>&1 \
      || fail "mariadb-install-db failed" "$LOG/mariadbd.log"
  fi
  # mariadbd does not daemonize: start it in its own session, detached from our output.
  setsid mariadbd --no-defaults --user=mysql \
    --datadir="$DB/data" --socket="$DB/mysqld.sock" --pid-file="$DB/mariadbd.pid" \
    --port=3306 --bind-address=127.0.0.1 --skip-name-resolve \
    --log-error="$LOG/mariadbd.log" \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --innodb-lock-wait-timeout=900 \
    --skip-log-bin </dev/null >>"$LOG/mariadbd.log" 2>&1 9>&- &
  echo $! >"$RUN/mariadbd.pid"
  local end=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$end" ]; do
    mariadb-admin --no-defaults --socket="$DB/mysqld.sock" -u root ping >/dev/null 2>&1 && break
    running mariadbd || fail "mariadbd exited while starting" "$LOG/mariadbd.log"
    sleep 0.1
  done
  mariadb-admin --no-defaults --socket="$DB/mysqld.sock" -u root ping >/dev/null 2>&1 \
    || fail "mariadbd did not answer within 30 s" "$LOG/mariadbd.log"
  # From now on, the pid mariadbd wrote itself (the same process, unless setsid had to fork).
  [ -s "$DB/mariadbd.pid" ] && cp "$DB/mariadbd.pid" "$RUN/mariadbd.pid"
  local pw
  pw="$(db_password)"
  mysql_root >>"$LOG/mariadbd.log" 2>&1 <<EOF || fail "could not create slurmdbd's database and user" "$LOG/mariadbd.log"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pw';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pw';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

# Start a Slurm daemon that forks into the background and writes its own pid file.
start_slurm_daemon() {
  local name="$1" port="$2"
  running "$name" && return 0
  need_port "$port" "$name"
  rm -f "$(pid_file "$name")"
  "$name" >>"$LOG/$name.start.log" 2>&1 </dev/null 9>&- \
    || fail "$name did not start" "$LOG/$name.start.log" "$(log_file "$name")"
  local end=$((SECONDS + 10))
  while [ "$SECONDS" -lt "$end" ]; do
    running "$name" && return 0
    sleep 0.1
  done
  fail "$name did not stay up" "$LOG/$name.start.log" "$(log_file "$name")"
}

wait_slurmdbd() {
  local end=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$end" ]; do
    client sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1 && return 0
    running slurmdbd || break
    sleep 0.2
  done
  local why
  why="$(client sacctmgr -n -P show cluster format=cluster 2>&1 | tail -n 5 || true)"
  fail "slurmdbd does not answer sacctmgr within 30 s:
$why" "$(log_file slurmdbd)"
}

register_cluster() {
  if ! client sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
    client sacctmgr -i add cluster "$CLUSTER" >>"$LOG/slurmdbd.start.log" 2>&1 \
      || fail "could not register cluster $CLUSTER with slurmdbd" "$LOG/slurmdbd.start.log" "$(log_file slurmdbd)"
  fi
}

# Ready: the node is up (idle, or busy with jobs) and sacct answers.
wait_ready() {
  local host state resumed=0 end=$((SECONDS + READY_TIMEOUT_S))
  host="$(short_host)"
  while [ "$SECONDS" -lt "$end" ]; do
    state="$(client sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1 || true)"
    case "$state" in
      idle | mix | alloc | comp)
        if client sacct -n -X -j 1 -o JobID >/dev/null 2>&1; then
          return 0
        fi
        ;;
      down | drain | drng)
        # A node that was down when slurmctld last ran stays down: bring it back once.
        if [ "$resumed" = 0 ]; then
          client scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
          resumed=1
        fi
        ;;
    esac
    local d
    for d in "${DAEMONS[@]}"; do
      running "$d" || fail "$d exited while waiting for the node" "$(log_file "$d")"
    done
    sleep 0.2
  done
  fail "the node is not ready after ${READY_TIMEOUT_S}s (sinfo says '${state:-nothing}')" \
    "$(log_file slurmctld)" "$(log_file slurmd)" "$(log_file slurmdbd)"
}

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do running "$d" || return 1; done
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"
  mkdir -p "$STATE" "$LOG"
  # One `up` or `down` at a time. Every daemon is started with fd 9 closed (9>&-): a daemon
  # holding the lock would block every later `up`.
  exec 9>"$STATE/lock"
  flock 9
  local t0=$SECONDS
  if all_running && our_client_conf; then
    wait_ready
    say "already up ($STATE)"
    return 0
  fi
  check_client_conf
  # Every port we will need, before starting anything.
  running mariadbd || need_port 3306 mariadbd
  running slurmdbd || need_port 6819 slurmdbd
  running slurmctld || need_port 6817 slurmctld
  running slurmd || need_port 6818 slurmd
  install_packages
  ensure_hostname_resolves
  make_dirs
  forget_state_of_another_host
  write_configs
  ensure_client_conf_link
  start_munged
  start_mariadbd
  start_slurm_daemon slurmdbd 6819
  wait_slurmdbd
  register_cluster
  start_slurm_daemon slurmctld 6817
  start_slurm_daemon slurmd 6818
  wait_ready
  say "up in $((SECONDS - t0))s: cluster '$CLUSTER', node '$(short_host)', state in $STATE"
}

# ---------------------------------------------------------------------------------------------
# Stopping

# stop_daemons NAME... : SIGTERM to each of ours that runs, wait for all (10 s), then SIGKILL.
stop_daemons() {
  local name pid pids=() names=()
  for name in "$@"; do
    pid="$(live_pid "$(pid_file "$name")" "$name")"
    rm -f "$(pid_file "$name")"
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
    names+=("$name")
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  local end=$((SECONDS + 10)) i alive
  while [ "$SECONDS" -lt "$end" ]; do
    alive=0
    for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && alive=1; done
    [ "$alive" = 1 ] || break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    pid="${pids[$i]}"
    name="${names[$i]}"
    if [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
      say "$name ($pid) did not stop within 10 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "stopped $name ($pid)"
  done
}

cmd_down() {
  [ "$(id -u)" = 0 ] || die "run as root"
  if [ ! -d "$STATE" ]; then
    say "nothing to stop ($STATE does not exist)"
    return 0
  fi
  exec 9>"$STATE/lock"
  flock 9
  # Jobs of our own cluster would outlive slurmd (slurmstepd runs on its own): cancel them first.
  if running slurmctld; then
    local jobs
    jobs="$(client squeue -h -o %i 2>/dev/null | tr '\n' ' ' || true)"
    if [ -n "${jobs// /}" ]; then
      say "cancelling jobs still in the queue: $jobs"
      # shellcheck disable=SC2086
      client scancel $jobs 2>/dev/null || true
      local end=$((SECONDS + 15))
      while [ "$SECONDS" -lt "$end" ]; do
        [ -z "$(client squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.2
      done
    fi
  fi
  # slurmctld hands its last job records to slurmdbd, which writes them to mariadbd; the Slurm
  # daemons need munged. So: slurmd and slurmctld, then slurmdbd, then mariadbd and munged.
  stop_daemons slurmd slurmctld
  stop_daemons slurmdbd
  stop_daemons mariadbd munged
  if our_client_conf; then rm -f "$CLIENT_CONF"; fi
  if grep -qF "$HOSTS_MARK" /etc/hosts 2>/dev/null; then
    # Rewrite in place (/etc/hosts may be a bind mount that cannot be replaced).
    local kept
    kept="$(grep -vF "$HOSTS_MARK" /etc/hosts)"
    printf '%s\n' "$kept" >/etc/hosts
  fi
  say "down (state kept in $STATE: remove that folder to forget jobs and accounting)"
}

cmd_status() {
  local d pid
  for d in "${DAEMONS[@]}"; do
    pid="$(live_pid "$(pid_file "$d")" "$d")"
    printf '%-10s %s\n' "$d" "${pid:-not running}"
  done
  if running slurmctld; then client sinfo || true; fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: bash scripts/slurm.sh up|down|status   (state in \$MLEXP_SLURM_DIR, default /var/tmp/mlexp-slurm)" >&2
    exit 2
    ;;
esac
