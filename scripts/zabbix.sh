#!/usr/bin/env bash
# Local real Zabbix 6.0 LTS (server + frontend with the JSON-RPC API, Debian packages, on the local
# PostgreSQL) plus a real MariaDB primary/replica pair whose replication lag can be raised and lowered on
# demand; the replica's Seconds_Behind_Master lands in Zabbix as item history. Run with --help.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELPERS=$SCRIPT_DIR/zabbix
ZBX_PY=$HELPERS/zbx.py

LOG_TAG=zabbix
# shellcheck source=lib/service.sh
source "$SCRIPT_DIR/lib/service.sh"
ZBX_DIR=$STACKWATCH_HOME/zabbix
MARIADB_DIR=$STACKWATCH_HOME/mariadb

WEB_PORT=${SW_ZABBIX_WEB_PORT:-29080}
SERVER_PORT=${SW_ZABBIX_SERVER_PORT:-29051}
PRIMARY_PORT=${SW_MARIADB_PRIMARY_PORT:-29306}
REPLICA_PORT=${SW_MARIADB_REPLICA_PORT:-29307}
PG_HOST=${SW_PG_HOST:-127.0.0.1}
PG_PORT=${SW_PG_PORT:-5432}
PG_SUPERUSER=${SW_PG_SUPERUSER:-postgres}
DB_NAME=${SW_ZABBIX_DB:-stackwatch_zabbix}
DB_USER=${SW_ZABBIX_DB_USER:-stackwatch_zabbix}
PHP_WORKERS=${SW_ZABBIX_PHP_WORKERS:-4}
FEED_INTERVAL=${SW_ZABBIX_FEED_INTERVAL:-2}
CACHE_UPDATE=${SW_ZABBIX_CACHE_UPDATE:-10}

API_URL=http://127.0.0.1:$WEB_PORT/api_jsonrpc.php
API_USER=Admin
API_PASSWORD=zabbix
ZBX_HOSTNAME=db-replica
LAG_KEY=db.replication.seconds_behind_master
RUNNING_KEY=db.replication.running
WSREP_KEY=db.wsrep.local_state
REPL_USER=stackwatch_repl
REPL_PASSWORD=stackwatch-repl
MONITOR_USER=zbx_monitor
MONITOR_PASSWORD=stackwatch-monitor

FRONTEND_DIR=/usr/share/zabbix
FRONTEND_CONF=/etc/zabbix/zabbix.conf.php
SERVER_CONF=$ZBX_DIR/zabbix_server.conf
SQL_DIR=/usr/share/zabbix-server-pgsql
PACKAGES=(zabbix-server-pgsql zabbix-frontend-php php-cli php-pgsql php-bcmath php-gd php-mbstring php-xml)

# The lifecycle's settings (scripts/lib/service.sh).
SERVICES=(zabbix-server zabbix-web mariadb-primary mariadb-replica zabbix-feeder) # start order
SERVICE_LOCK=.zabbix.lock
# A process of someone else's on our ports is no Zabbix of ours (its objects, its database): start refuses.
SERVICE_FOREIGN=refuse
SERVICE_NAME_WIDTH=16

usage() {
  cat <<EOF
usage: scripts/zabbix.sh COMMAND [SERVICE...]

A real Zabbix 6.0 LTS (Debian packages: zabbix_server + PHP frontend holding the JSON-RPC API, on the
local PostgreSQL, database $DB_NAME) and a real MariaDB primary/replica pair (our own mariadbd
instances; the shared MariaDB on 3306 is not touched). A feeder process writes a heartbeat row to the
primary every second and pushes the replica's SHOW SLAVE STATUS Seconds_Behind_Master to the Zabbix
trapper every ${FEED_INTERVAL}s, as item $LAG_KEY of host $ZBX_HOSTNAME.

SERVICE (default: all, in this order): ${SERVICES[*]}

commands:
  install        apt-get install the Debian packages (idempotent; a no-op when installed)
  start          install if needed; create database $DB_NAME and load the Zabbix schema once; start
                 zabbix_server, the frontend (php -S), the MariaDB primary and replica (datadirs made
                 on first use, replication set up), configure host/items/triggers through the API,
                 start the feeder; wait until the API answers, user.login works and the first lag
                 value is in history. Processes of ours already running are left alone; with
                 SERVICE names, only those (and the steps that go with them) are started.
  stop           stop only processes started by this script, by recorded PID (SIGTERM, then
                 SIGKILL after \$SW_STOP_TIMEOUT s); data (database, datadirs) is kept
  status         one line per process: name, up/down, pid, memory, address (exit 3 if any
                 listed is down)
  env            print STACKWATCH_ZABBIX_* / STACKWATCH_MARIADB_* variables:
                 eval "\$(scripts/zabbix.sh env)"
  lag on SECONDS [--no-wait]
                 raise replication lag: CHANGE MASTER TO MASTER_DELAY=SECONDS+2 on the replica.
                 The SQL thread then holds each heartbeat event (one a second from the feeder)
                 back, so Seconds_Behind_Master rises like real lag, 1 s per second, and stays at
                 SECONDS+1..SECONDS+2: above SECONDS after ~SECONDS+1 s on the replica, ~3 s later
                 in Zabbix. Waits for both (unless --no-wait).
  lag off [--no-wait]
                 MASTER_DELAY=0: the replica catches up at once; waits for 0 on the replica and in
                 Zabbix history
  lag            print the replica's current Seconds_Behind_Master and SQL_Delay
  send KEY VALUE [HOST]
                 push one value to the Zabbix trapper (e.g. send $WSREP_KEY 2); same as
                 scripts/zabbix/zabbix_sender -z 127.0.0.1 -p $SERVER_PORT -s HOST -k KEY -o VALUE
  reload         zabbix_server -R config_cache_reload: items/hosts created through the API are
                 accepted by the trapper at once instead of after the next cache update
  reset          stop, then drop database $DB_NAME and delete the MariaDB datadirs and
                 \$STACKWATCH_HOME/zabbix (the next start begins from scratch)

Zabbix objects (made by start): host group "Stackwatch databases", host "$ZBX_HOSTNAME" with trapper
items (numeric unsigned) $LAG_KEY, $RUNNING_KEY (1 = IO and SQL threads running) and $WSREP_KEY (fed by
tests: 4 = Synced, 2 = Donor/Desynced), and triggers on them; itemids: \$STACKWATCH_HOME/zabbix/ids.json.

environment (defaults):
  STACKWATCH_HOME=$STACKWATCH_HOME
  SW_ZABBIX_WEB_PORT=29080 (frontend + API)  SW_ZABBIX_SERVER_PORT=29051 (server/trapper)
  SW_MARIADB_PRIMARY_PORT=29306  SW_MARIADB_REPLICA_PORT=29307
  SW_PG_HOST=127.0.0.1 SW_PG_PORT=5432 SW_PG_SUPERUSER=postgres (trust auth expected)
  SW_ZABBIX_DB=stackwatch_zabbix SW_ZABBIX_DB_USER=stackwatch_zabbix
  SW_ZABBIX_PHP_WORKERS=4 (PHP_CLI_SERVER_WORKERS)  SW_ZABBIX_FEED_INTERVAL=2 (s)
  SW_ZABBIX_CACHE_UPDATE=10 (s, zabbix_server CacheUpdateFrequency: new items reach the trapper
                    after this, or at once with "reload")
  SW_START_TIMEOUT=120 (s, per step)  SW_STOP_TIMEOUT=30

files: \$STACKWATCH_HOME/log/<name>.log, \$STACKWATCH_HOME/run/<name>.pid, \$STACKWATCH_HOME/zabbix/,
       \$STACKWATCH_HOME/mariadb/{primary,replica}/; the frontend's config is written to
       $FRONTEND_CONF (the path the Debian frontend reads)
EOF
}

# Unix sockets are limited to 107 bytes: fall back to /tmp for a deep STACKWATCH_HOME.
mariadb_socket() { # ROLE
  local s=$MARIADB_DIR/$1/mysqld.sock
  if (( ${#s} > 100 )); then
    s=/tmp/stackwatch-$(printf '%s' "$STACKWATCH_HOME" | sha1sum | cut -c1-10)-$1.sock
  fi
  echo "$s"
}
PRIMARY_SOCKET=$(mariadb_socket primary)
REPLICA_SOCKET=$(mariadb_socket replica)

# ---------------------------------------------------------------- the services' hooks (scripts/lib/service.sh)

svc_url() {
  case $1 in
    zabbix-server) echo "127.0.0.1:$SERVER_PORT" ;;
    zabbix-web) echo "$API_URL" ;;
    mariadb-primary) echo "127.0.0.1:$PRIMARY_PORT" ;;
    mariadb-replica) echo "127.0.0.1:$REPLICA_PORT" ;;
    zabbix-feeder) echo "-> $ZBX_HOSTNAME:$LAG_KEY every ${FEED_INTERVAL}s" ;;
  esac
}
svc_ports() {
  case $1 in
    zabbix-server) echo "$SERVER_PORT" ;;
    zabbix-web) echo "$WEB_PORT" ;;
    mariadb-primary) echo "$PRIMARY_PORT" ;;
    mariadb-replica) echo "$REPLICA_PORT" ;;
  esac
}
# A string that must appear in the command line of a process we started; guards against
# killing an unrelated process that inherited a recycled PID.
svc_marker() {
  case $1 in
    zabbix-server) echo "zabbix_server" ;; # Zabbix rewrites its process title; checked with exe too
    zabbix-web) echo "-S 127.0.0.1:$WEB_PORT" ;;
    mariadb-primary) echo "$MARIADB_DIR/primary/my.cnf" ;;
    mariadb-replica) echo "$MARIADB_DIR/replica/my.cnf" ;;
    zabbix-feeder) echo "$ZBX_PY feeder" ;;
  esac
}

# ---------------------------------------------------------------- probes


# the helper's environment (zbx.py reads these)
ZBX_ENV=(ZBX_API_URL="$API_URL" ZBX_API_USER="$API_USER" ZBX_API_PASSWORD="$API_PASSWORD"
  ZBX_TRAPPER_HOST=127.0.0.1 ZBX_TRAPPER_PORT="$SERVER_PORT" ZBX_HOST="$ZBX_HOSTNAME"
  MARIADB_PRIMARY_SOCKET="$PRIMARY_SOCKET" MARIADB_REPLICA_PORT="$REPLICA_PORT"
  MARIADB_MONITOR_USER="$MONITOR_USER" MARIADB_MONITOR_PASSWORD="$MONITOR_PASSWORD"
  FEED_INTERVAL="$FEED_INTERVAL" HEARTBEAT_INTERVAL=1)
zbx() { env "${ZBX_ENV[@]}" python3 "$ZBX_PY" "$@"; }

sql_root() { # ROLE SQL...: as root over the instance's socket, batch output
  local role=$1; shift
  mariadb --no-defaults --connect-timeout=3 -S "$(mariadb_socket "$role")" -u root -N -B -e "$*"
}
slave_field() { # FIELD: one field of SHOW SLAVE STATUS on the replica ("" if unavailable)
  mariadb --no-defaults --connect-timeout=3 -S "$REPLICA_SOCKET" -u root -E -e 'SHOW SLAVE STATUS' 2>/dev/null |
    sed -n "s/^ *$1: //p" || true
}

svc_ready() {
  case $1 in
    zabbix-server) port_open "$SERVER_PORT" ;;
    zabbix-web) zbx ready 2>/dev/null ;;
    mariadb-primary) sql_root primary 'SELECT 1' >/dev/null 2>&1 ;;
    mariadb-replica) sql_root replica 'SELECT 1' >/dev/null 2>&1 ;;
    zabbix-feeder) [[ -n $(service_pids zabbix-feeder) ]] ;;
  esac
}

# ---------------------------------------------------------------- install

missing_packages() { # print the packages of PACKAGES (+ MariaDB/PostgreSQL clients) not installed
  local want=("${PACKAGES[@]}")
  command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || want+=(mariadb-server)
  command -v mariadb >/dev/null 2>&1 || want+=(mariadb-client)
  command -v psql >/dev/null 2>&1 || want+=(postgresql-client)
  packages_missing "${want[@]}"
}

do_install() {
  local t0 missing
  t0=$(now_ms)
  mapfile -t missing < <(missing_packages)
  if (( ${#missing[@]} == 0 )); then
    log "packages already installed ($(zabbix_server -V 2>/dev/null | head -n1))"
    return 0
  fi
  apt_install zabbix-apt.log "${missing[@]}"
  [[ -x /usr/sbin/zabbix_server && -f $FRONTEND_DIR/api_jsonrpc.php && -f $SQL_DIR/schema.sql.gz ]] ||
    die "packages installed but zabbix_server, the frontend or $SQL_DIR/schema.sql.gz is missing"
  log "installed ${missing[*]} in $(since "$t0") ($(zabbix_server -V | head -n1))"
}

# ---------------------------------------------------------------- PostgreSQL

psql_su() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" "$@"; }

ensure_postgres() {
  if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then return 0; fi
  local v started=0
  if [[ $PG_HOST == 127.0.0.1 || $PG_HOST == localhost ]] && command -v pg_ctlcluster >/dev/null 2>&1; then
    for v in /etc/postgresql/*/; do
      v=$(basename "$v")
      [[ $v != '*' ]] || continue
      log "PostgreSQL is down: pg_ctlcluster $v main start"
      if pg_ctlcluster --skip-systemctl-redirect "$v" main start >&2; then started=1; fi
    done
  fi
  (( started )) || die "PostgreSQL does not answer on $PG_HOST:$PG_PORT (SW_PG_HOST/SW_PG_PORT)"
  local deadline=$(( $(now_ms) + 30000 ))
  until pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; do
    (( $(now_ms) < deadline )) || die "PostgreSQL did not come up on $PG_HOST:$PG_PORT"
    sleep 0.5
  done
}

ensure_database() {
  ensure_postgres
  if [[ -z $(psql_su -d postgres -Atc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'") ]]; then
    psql_su -d postgres -c "CREATE ROLE \"$DB_USER\" LOGIN"
  fi
  if [[ -z $(psql_su -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'") ]]; then
    log "creating database $DB_NAME (owner $DB_USER)"
    psql_su -d postgres -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\" ENCODING 'UTF8' TEMPLATE template0"
  fi
  # The schema is loaded in one transaction: dbversion exists only if all of it went in.
  if [[ -n $(psql_su -d "$DB_NAME" -Atc "SELECT 1 FROM pg_tables WHERE tablename = 'dbversion'") ]]; then
    return 0
  fi
  local t0; t0=$(now_ms)
  log "loading the Zabbix schema into $DB_NAME ($SQL_DIR/{schema,images,data}.sql.gz)"
  if ! { zcat "$SQL_DIR/schema.sql.gz" "$SQL_DIR/images.sql.gz" "$SQL_DIR/data.sql.gz"; } |
    psql -X -q -v ON_ERROR_STOP=1 --single-transaction -h "$PG_HOST" -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" \
      >"$LOG_DIR/zabbix-schema.log" 2>&1; then
    show_log_tail "$LOG_DIR/zabbix-schema.log"
    die "loading the Zabbix schema failed (log: $LOG_DIR/zabbix-schema.log)"
  fi
  log "schema loaded in $(since "$t0")"
}

# ---------------------------------------------------------------- config files

render() { # TEMPLATE: substitute @VARS@
  sed -e "s#@SERVER_PORT@#$SERVER_PORT#g" -e "s#@ZBX_DIR@#$ZBX_DIR#g" -e "s#@PG_HOST@#$PG_HOST#g" \
    -e "s#@PG_PORT@#$PG_PORT#g" -e "s#@DB_NAME@#$DB_NAME#g" -e "s#@DB_USER@#$DB_USER#g" \
    -e "s#@CACHE_UPDATE@#$CACHE_UPDATE#g" "$1"
}

write_configs() {
  mkdir -p "$ZBX_DIR/sock" "$ZBX_DIR/tmp" "$ZBX_DIR/php-sessions"
  render "$HELPERS/zabbix_server.conf.tmpl" >"$SERVER_CONF"
  local tmp; tmp=$(mktemp)
  render "$HELPERS/zabbix.conf.php.tmpl" >"$tmp"
  if ! cmp -s "$tmp" "$FRONTEND_CONF" 2>/dev/null; then
    mkdir -p "$(dirname "$FRONTEND_CONF")"
    if [[ -f $FRONTEND_CONF ]] && ! grep -q 'stackwatch scripts/zabbix.sh' "$FRONTEND_CONF"; then
      cp -p "$FRONTEND_CONF" "$FRONTEND_CONF.before-stackwatch"
      log "saved the existing $FRONTEND_CONF as $FRONTEND_CONF.before-stackwatch"
    fi
    install -m 0644 "$tmp" "$FRONTEND_CONF"
  fi
  rm -f "$tmp"
}

mariadb_cnf() { # ROLE PORT SERVER_ID
  local role=$1 port=$2 id=$3 dir=$MARIADB_DIR/$1
  cat <<EOF
# generated by scripts/zabbix.sh: the stackwatch MariaDB $role (not the system MariaDB)
[mariadbd]
user=root
datadir=$dir/data
port=$port
bind-address=127.0.0.1
socket=$(mariadb_socket "$role")
pid-file=$dir/mariadbd.pid
server-id=$id
skip-name-resolve
performance-schema=OFF
innodb-buffer-pool-size=32M
innodb-log-file-size=16M
max-connections=60
binlog-format=ROW
binlog-expire-logs-seconds=86400
EOF
  if [[ $role == primary ]]; then
    printf 'log-bin=mariadb-bin\n'
  else
    printf 'relay-log=relay-bin\nread-only=ON\n'
  fi
}

# ---------------------------------------------------------------- launch

launch_zabbix_server() {
  launch "$LOG_DIR/zabbix-server.log" /usr/sbin/zabbix_server -f -c "$SERVER_CONF"
}

launch_zabbix_web() {
  launch "$LOG_DIR/zabbix-web.log" env PHP_CLI_SERVER_WORKERS="$PHP_WORKERS" php -q \
    -d memory_limit=256M -d post_max_size=16M -d upload_max_filesize=2M -d max_execution_time=300 \
    -d max_input_time=300 -d date.timezone=UTC -d session.save_path="$ZBX_DIR/php-sessions" \
    -d display_errors=0 -d log_errors=1 \
    -S "127.0.0.1:$WEB_PORT" -t "$FRONTEND_DIR"
}

launch_mariadb() { # ROLE PORT SERVER_ID
  local role=$1 dir=$MARIADB_DIR/$1
  mkdir -p "$dir"
  mariadb_cnf "$@" >"$dir/my.cnf"
  if [[ ! -f $dir/data/.stackwatch-initialized ]]; then
    log "mariadb-$role: initializing $dir/data (mariadb-install-db)"
    rm -rf "$dir/data"
    if ! mariadb-install-db --defaults-file="$dir/my.cnf" --auth-root-authentication-method=normal \
      --skip-test-db >"$LOG_DIR/mariadb-$role-install.log" 2>&1; then
      show_log_tail "$LOG_DIR/mariadb-$role-install.log"
      die "mariadb-install-db failed for the $role"
    fi
    touch "$dir/data/.stackwatch-initialized"
  fi
  launch "$LOG_DIR/mariadb-$role.log" /usr/sbin/mariadbd --defaults-file="$dir/my.cnf"
}
launch_mariadb_primary() { launch_mariadb primary "$PRIMARY_PORT" 1; }
launch_mariadb_replica() { launch_mariadb replica "$REPLICA_PORT" 2; }

launch_zabbix_feeder() {
  launch "$LOG_DIR/zabbix-feeder.log" env "${ZBX_ENV[@]}" python3 "$ZBX_PY" feeder
}

# The steps around the services' starts (run by service_start_all also when the process was up already: all
# idempotent).
PREPARED=0
prepare() { # what the server and the frontend read: packages, database, config files (once a run)
  (( PREPARED )) && return 0
  do_install
  ensure_database
  write_configs
  PREPARED=1
}
before_start_zabbix_server() { prepare; }
before_start_zabbix_web() { prepare; }

after_start_mariadb_primary() {
  local stamp=$MARIADB_DIR/primary/data/.stackwatch-bootstrapped
  [[ -f $stamp ]] && return 0
  sql_root primary "
    CREATE DATABASE IF NOT EXISTS stackwatch;
    CREATE TABLE IF NOT EXISTS stackwatch.heartbeat (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL, seq BIGINT NOT NULL);
    CREATE USER IF NOT EXISTS '$REPL_USER'@'127.0.0.1' IDENTIFIED BY '$REPL_PASSWORD';
    GRANT REPLICATION SLAVE ON *.* TO '$REPL_USER'@'127.0.0.1';
    CREATE USER IF NOT EXISTS '$MONITOR_USER'@'127.0.0.1' IDENTIFIED BY '$MONITOR_PASSWORD';
    GRANT SLAVE MONITOR, BINLOG MONITOR, PROCESS ON *.* TO '$MONITOR_USER'@'127.0.0.1';
    GRANT SELECT ON stackwatch.* TO '$MONITOR_USER'@'127.0.0.1';" ||
    die "bootstrapping the MariaDB primary failed"
  touch "$stamp"
  log "mariadb-primary: database stackwatch, users $REPL_USER and $MONITOR_USER created"
}

after_start_mariadb_replica() { # (SERVICE_FRESH=1: we just launched it)
  if [[ -z $(slave_field Master_Host) ]]; then
    log "mariadb-replica: CHANGE MASTER TO 127.0.0.1:$PRIMARY_PORT; START SLAVE"
    sql_root replica "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PRIMARY_PORT,
      MASTER_USER='$REPL_USER', MASTER_PASSWORD='$REPL_PASSWORD', MASTER_USE_GTID=slave_pos,
      MASTER_CONNECT_RETRY=1; START SLAVE;" || die "setting up replication failed"
  elif [[ $SERVICE_FRESH == 1 && $(slave_field SQL_Delay) != 0 ]]; then
    log "mariadb-replica: resetting MASTER_DELAY to 0 (lag off) after restart"
    sql_root replica "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE;"
  fi
  # Ready when both threads run and the monitoring user (replicated from the primary) can log in.
  local deadline=$(( $(now_ms) + START_TIMEOUT * 1000 ))
  while :; do
    if [[ $(slave_field Slave_IO_Running) == Yes && $(slave_field Slave_SQL_Running) == Yes ]] &&
      mariadb --no-defaults --connect-timeout=3 -h 127.0.0.1 -P "$REPLICA_PORT" -u "$MONITOR_USER" \
        -p"$MONITOR_PASSWORD" -e 'SHOW SLAVE STATUS' >/dev/null 2>&1; then
      return 0
    fi
    if (( $(now_ms) >= deadline )); then
      mariadb --no-defaults -S "$REPLICA_SOCKET" -u root -E -e 'SHOW SLAVE STATUS' >&2 || true
      die "replication did not start within ${START_TIMEOUT}s"
    fi
    sleep 0.3
  done
}

# The host, items and triggers through the API, before the feeder sends to them; their itemids in ids.json.
FEED_SINCE=0
before_start_zabbix_feeder() {
  local ids
  ids=$(zbx setup) || die "configuring Zabbix through the API failed"
  printf '%s\n' "$ids" >"$ZBX_DIR/ids.json"
  # Make the new items known to the trapper now rather than at the next cache update.
  config_reload || true
  FEED_SINCE=$(date +%s)
  log "itemids $ids"
}
after_start_zabbix_feeder() { # the first lag value in history: the whole chain works
  local v
  v=$(zbx wait-value "$LAG_KEY" "$FEED_SINCE" "$START_TIMEOUT") || {
    show_log_tail "$LOG_DIR/zabbix-feeder.log" 10
    show_log_tail "$LOG_DIR/zabbix-server.log" 10
    die "no $LAG_KEY value reached Zabbix history"
  }
  log "first $LAG_KEY value in Zabbix history: ${v#* } (clock ${v%% *})"
}

config_reload() {
  /usr/sbin/zabbix_server -c "$SERVER_CONF" -R config_cache_reload >/dev/null 2>&1
}

# ---------------------------------------------------------------- commands

install_all() { do_install; }

start_all() {
  service_start_all "$@"
  log "API $API_URL (Admin/zabbix), trapper 127.0.0.1:$SERVER_PORT"
}

group_mem() { # PID: memory of the process and its descendants: PSS (shared pages split) and RSS sum
  local root=$1 p pss=0 rss=0 v
  for p in $(ps -e -o pid=,ppid= | awk -v root="$root" '
      { parent[$1]=$2 }
      END { for (p in parent) { q=p; while (q != "" && q > 1) { if (q == root) { print p; break } q=parent[q] } } }'); do
    v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) && pss=$(( pss + ${v:-0} ))
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) && rss=$(( rss + ${v:-0} ))
  done
  printf 'pss=%dM/rss=%dM' $(( pss / 1024 )) $(( rss / 1024 ))
}

svc_status_detail() { # SVC PID: the memory of its processes, and its address
  local mem=""
  if [[ $2 != - ]]; then mem=$(group_mem "$2"); fi
  printf '%-20s %s' "$mem" "$(svc_url "$1")"
}

print_env() {
  cat <<EOF
STACKWATCH_ZABBIX_URL=$API_URL
STACKWATCH_ZABBIX_USER=$API_USER
STACKWATCH_ZABBIX_PASSWORD=$API_PASSWORD
STACKWATCH_ZABBIX_TRAPPER_HOST=127.0.0.1
STACKWATCH_ZABBIX_TRAPPER_PORT=$SERVER_PORT
STACKWATCH_ZABBIX_SENDER=$HELPERS/zabbix_sender
STACKWATCH_ZABBIX_HOST=$ZBX_HOSTNAME
STACKWATCH_ZABBIX_LAG_KEY=$LAG_KEY
STACKWATCH_ZABBIX_RUNNING_KEY=$RUNNING_KEY
STACKWATCH_ZABBIX_WSREP_KEY=$WSREP_KEY
STACKWATCH_MARIADB_PRIMARY=127.0.0.1:$PRIMARY_PORT
STACKWATCH_MARIADB_REPLICA=127.0.0.1:$REPLICA_PORT
STACKWATCH_MARIADB_MONITOR_USER=$MONITOR_USER
STACKWATCH_MARIADB_MONITOR_PASSWORD=$MONITOR_PASSWORD
EOF
}

# ---------------------------------------------------------------- lag

set_delay() { # SECONDS
  sql_root replica "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=$1; START SLAVE;" ||
    die "CHANGE MASTER TO MASTER_DELAY=$1 failed"
}

lag_matches() { # VALUE CMP(gt|eq) N
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  if [[ $2 == gt ]]; then (( $1 > $3 )); else (( $1 == $3 )); fi
}

wait_lag() { # CMP(gt|eq) N TIMEOUT ZABBIX(1/0) T0 SINCE
  local cmp=$1 n=$2 timeout=$3 zabbix=$4 t0=$5 since_s=$6 v deadline
  deadline=$(( $(now_ms) + timeout * 1000 ))
  while :; do
    v=$(slave_field Seconds_Behind_Master)
    if lag_matches "$v" "$cmp" "$n"; then
      log "replica Seconds_Behind_Master=$v after $(since "$t0")"
      break
    fi
    (( $(now_ms) < deadline )) || die "replica Seconds_Behind_Master is ${v:-?} after ${timeout}s (wanted $cmp $n)"
    sleep 0.2
  done
  (( zabbix )) || return 0
  [[ -f $ZBX_DIR/ids.json ]] || die "$ZBX_DIR/ids.json missing: run scripts/zabbix.sh start"
  while :; do
    v=$(zbx call history.get "{\"history\":3,\"itemids\":[\"$(item_id "$LAG_KEY")\"],\"sortfield\":\"clock\",\"sortorder\":\"DESC\",\"limit\":1,\"time_from\":$since_s}" |
      python3 -c 'import json,sys; h=json.load(sys.stdin); print(h[0]["value"] if h else "")' 2>/dev/null) || v=""
    if lag_matches "$v" "$cmp" "$n"; then
      log "Zabbix history $LAG_KEY=$v after $(since "$t0")"
      return 0
    fi
    (( $(now_ms) < deadline )) || die "Zabbix history $LAG_KEY is ${v:-none} after ${timeout}s (wanted $cmp $n)"
    sleep 0.5
  done
}

item_id() { # KEY: from ids.json
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["items"][sys.argv[2]])' "$ZBX_DIR/ids.json" "$1"
}

do_lag() {
  local mode=${1:-} secs="" wait=1 arg t0 since_s
  [[ $# -gt 0 ]] && shift
  for arg in "$@"; do
    case $arg in
      --no-wait) wait=0 ;;
      *) if [[ -z $secs ]]; then secs=$arg; else die "lag: unexpected argument $arg"; fi ;;
    esac
  done
  [[ -n $(service_pids mariadb-replica) ]] || die "the MariaDB replica is not running (scripts/zabbix.sh start)"
  case $mode in
    ""|status)
      echo "Seconds_Behind_Master=$(slave_field Seconds_Behind_Master) SQL_Delay=$(slave_field SQL_Delay)" \
        "Slave_IO_Running=$(slave_field Slave_IO_Running) Slave_SQL_Running=$(slave_field Slave_SQL_Running)"
      return 0 ;;
    on)
      if [[ ! $secs =~ ^[0-9]+$ ]] || (( secs < 1 )); then die "usage: lag on SECONDS (a whole number >= 1)"; fi
      [[ -n $(service_pids zabbix-feeder) ]] || log "warning: the feeder (heartbeat writer) is not running: lag shows only while the primary gets writes"
      t0=$(now_ms); since_s=$(date +%s)
      set_delay $(( secs + 2 ))
      log "lag on: MASTER_DELAY=$(( secs + 2 )) on the replica"
      (( wait )) && wait_lag gt "$secs" $(( secs + 60 )) 1 "$t0" "$since_s"
      ;;
    off)
      [[ -z $secs ]] || die "usage: lag off"
      t0=$(now_ms); since_s=$(date +%s)
      set_delay 0
      log "lag off: MASTER_DELAY=0 on the replica"
      (( wait )) && wait_lag eq 0 60 1 "$t0" "$since_s"
      ;;
    *) die "usage: lag on SECONDS | lag off | lag" ;;
  esac
  return 0
}

cmd_reset() {
  take_lock "$SERVICE_LOCK"
  service_stop_all "${SERVICES[@]}"
  if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
    psql_su -d postgres -c "DROP DATABASE IF EXISTS \"$DB_NAME\"" && log "dropped database $DB_NAME"
  fi
  rm -rf "$MARIADB_DIR" "$ZBX_DIR"
  log "removed $MARIADB_DIR and $ZBX_DIR"
}

cmd_lag() { take_lock "$SERVICE_LOCK"; do_lag "$@"; }

cmd_reload() {
  [[ -n $(service_pids zabbix-server) ]] || die "zabbix-server is not running"
  config_reload || die "zabbix_server -R config_cache_reload failed"
  log "configuration cache reload requested"
}

cmd_send() {
  [[ $# -ge 2 ]] || die "usage: send KEY VALUE [HOST]"
  "$HELPERS/zabbix_sender" -z 127.0.0.1 -p "$SERVER_PORT" -s "${3:-$ZBX_HOSTNAME}" -k "$1" -o "$2"
}

service_main "$@"
