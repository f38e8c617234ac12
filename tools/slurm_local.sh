#!/usr/bin/env bash
# A single-node SLURM with accounting on this machine, for CI and for trying the cluster path (docs/cluster.md):
#
#   tools/slurm_local.sh start    install (Debian packages, once), configure and start munge, MariaDB, slurmdbd,
#                                 slurmctld and slurmd; returns when the node is idle and sacct answers
#   tools/slurm_local.sh stop     stop each daemon by the PID it recorded at start (never by name)
#   tools/slurm_local.sh status   sinfo and the recorded PIDs
#
# Needs root and Debian (apt-get); no systemd: every daemon is started by hand. Its state (configs' copies, spool,
# logs, the MariaDB data directory, PID files) lives in $SLURM_LOCAL_DIR (default /tmp/genrobust-slurm); the
# configs go where every SLURM client reads them, /etc/slurm/. Measured facts behind each choice (issue 42):
# munge needs /run/munge; proctrack/linuxproc and task/none avoid cgroups (none in a container); SlurmctldHost must
# be this machine's hostname; MariaDB gets its own data directory and only its default local socket (no network
# port); KillWait=5 so that scancel ends a job (submitit ignores SIGTERM) in seconds, not SLURM's default 30 s.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/genrobust-slurm}
CLUSTER=genrobust
HOST=$(hostname)
PKGS=(slurm-wlm slurmdbd mariadb-server munge)
SOCK=/run/mysqld/mysqld.sock   # libmariadb's default: slurmdbd's StorageHost=localhost connects through it

say() { echo "slurm_local: $*"; }
die() { echo "slurm_local: error: $*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s; fail naming DESCRIPTION and the logs
wait_for() {
    local limit=$1 what=$2; shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || die "$what did not come up in ${limit} s; see $DIR/log/"
        sleep 0.5
    done
}

install_packages() {
    local missing=()
    for p in "${PKGS[@]}"; do  # a removed package keeps its config files: only "install ok installed" counts
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} (SLURM 22.05+, munge, MariaDB) by hand"
    say "installing ${missing[*]} (apt-get)"
    # no man pages for these packages: the man-db trigger alone costs ~10 s on 2 cores (the rule is removed after)
    local noman=/etc/dpkg/dpkg.cfg.d/01-genrobust-noman
    echo 'path-exclude=/usr/share/man/*' > "$noman"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$DIR/log/apt.log" 2>&1 \
        || rc=$?
    rm -f "$noman"
    [ $rc = 0 ] || die "apt-get install ${missing[*]} failed; see $DIR/log/apt.log"
}

record_pid() {  # record_pid NAME PIDFILE_WRITTEN_BY_THE_DAEMON
    wait_for 20 "$1 (PID file $2)" test -s "$2"
    cp "$2" "$DIR/pids/$1"
}

start_munge() {
    mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
    chown -R munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
    chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    record_pid munged /run/munge/munged.pid
    wait_for 10 munge sh -c 'munge -n | unmunge'
}

start_mariadb() {
    mkdir -p /run/mysqld "$DIR/mysql"
    chown mysql:mysql /run/mysqld "$DIR/mysql" "$DIR/log"  # its error log goes to $DIR/log: writable by mysql
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --user=mysql --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
            --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $DIR/log/"
    fi
    # its own data directory and socket, no TCP port; --innodb-buffer-pool-size: a small node
    setsid /usr/sbin/mariadbd --user=mysql --datadir="$DIR/mysql" --socket="$SOCK" --skip-networking \
        --pid-file=/run/mysqld/mariadbd.pid --log-error="$DIR/log/mariadbd.log" --innodb-buffer-pool-size=64M \
        </dev/null >/dev/null 2>&1 &
    record_pid mariadbd /run/mysqld/mariadbd.pid
    wait_for 30 MariaDB mariadb --socket="$SOCK" -e "SELECT 1"
    mariadb --socket="$SOCK" -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

write_configs() {
    mkdir -p /etc/slurm "$DIR/spool/ctld" "$DIR/spool/d"
    # the node as slurmd sees it (CPUs, sockets, cores, memory), so it is never drained for a mismatch
    local node
    node=$(slurmd -C | head -1) || die "slurmd -C failed"
    cat > /etc/slurm/slurm.conf <<EOF
# written by tools/slurm_local.sh: a single-node cluster with accounting
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
MinJobAge=300
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat > /etc/slurm/slurmdbd.conf <<EOF
# written by tools/slurm_local.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
}

start() {
    [ "$(id -u)" = 0 ] || die "needs root (it installs packages and starts daemons)"
    if [ -d "$DIR/pids" ] && [ -n "$(ls -A "$DIR/pids" 2>/dev/null)" ]; then
        die "already started ($DIR/pids holds PIDs); run '$0 stop' first"
    fi
    local t0=$SECONDS
    mkdir -p "$DIR/log" "$DIR/pids" "$DIR/run"
    chmod 755 "$DIR"  # mktemp -d makes it 0700: the mysql user must reach its data directory and log inside
    install_packages
    if scontrol ping 2>/dev/null | grep -q UP; then
        die "a SLURM controller already answers here (scontrol ping); stop it first (its own stop, or '$0 stop' with its SLURM_LOCAL_DIR)"
    fi
    if [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
        die "munged already runs (PID $(cat /run/munge/munged.pid)); stop it first"
    fi
    start_munge
    start_mariadb
    write_configs
    slurmdbd
    record_pid slurmdbd "$DIR/run/slurmdbd.pid"
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true  # present already on a restart
    slurmctld
    record_pid slurmctld "$DIR/run/slurmctld.pid"
    slurmd
    record_pid slurmd "$DIR/run/slurmd.pid"
    wait_for 60 "the node $HOST (idle)" sh -c "sinfo -h -N -o %t | grep -qx idle"
    wait_for 30 "accounting (sacct)" sacct -n -X
    say "up in $((SECONDS - t0)) s: $(sinfo -h -N -o '%N %c CPUs %m MB %t') (state and logs: $DIR)"
}

stop() {
    [ -d "$DIR/pids" ] || { say "nothing recorded in $DIR/pids: not started"; return 0; }
    # reverse order of start; each by its recorded PID, then wait for it to exit
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        local f="$DIR/pids/$name"
        [ -s "$f" ] || continue
        local pid; pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -0 "$pid" 2>/dev/null && { say "$name ($pid) ignored SIGTERM for 10 s: SIGKILL"; kill -9 "$pid"; }
        fi
        rm -f "$f"
    done
    say "stopped"
}

status() {
    for f in "$DIR"/pids/*; do [ -e "$f" ] && echo "$(basename "$f") $(cat "$f")"; done
    sinfo
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
