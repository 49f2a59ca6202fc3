#!/usr/bin/env bash
# A real, small OpenStack Zed (Debian 12's packages) on this machine for stackwatch's live tests: keystone,
# placement, glance (file store), neutron-server (ML2, flat, no agents), nova-api, -conductor, -scheduler,
# -novncproxy and nova-compute with the fake virt driver, each a plain process with its own config under
# $STACKWATCH_HOME/openstack, on the machine's MariaDB and RabbitMQ (own databases, user and vhost). Fault
# proxies sit in nova-compute's AMQP path and nova-conductor's database path; HAProxy fronts nova-api.
# Run with --help.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELPERS=$SCRIPT_DIR/openstack

LOG_TAG=openstack
# shellcheck source=lib/service.sh
source "$SCRIPT_DIR/lib/service.sh"
OS_DIR=$STACKWATCH_HOME/openstack
ETC=$OS_DIR/etc
STATE=$OS_DIR/state
# Everything of the cloud lives under one directory: the collector tails $OS_DIR/log/<service>.log.
LOG_DIR=$OS_DIR/log
RUN_DIR=$OS_DIR/run

KEYSTONE_PORT=${SW_OS_KEYSTONE_PORT:-28500}
PLACEMENT_PORT=${SW_OS_PLACEMENT_PORT:-28778}
NOVA_PORT=${SW_OS_NOVA_PORT:-28774}
GLANCE_PORT=${SW_OS_GLANCE_PORT:-28292}
NEUTRON_PORT=${SW_OS_NEUTRON_PORT:-28696}
NOVNC_PORT=${SW_OS_NOVNC_PORT:-28680}
HAPROXY_PORT=${SW_OS_HAPROXY_PORT:-28775}         # nova-api without option forwardfor
HAPROXY_FWD_PORT=${SW_OS_HAPROXY_FWD_PORT:-28776} # nova-api with option forwardfor
AMQP_PROXY_PORT=${SW_OS_AMQP_PROXY_PORT:-28672}
AMQP_PROXY_CONTROL_PORT=${SW_OS_AMQP_PROXY_CONTROL_PORT:-28673}
DB_PROXY_PORT=${SW_OS_DB_PROXY_PORT:-28306}
DB_PROXY_CONTROL_PORT=${SW_OS_DB_PROXY_CONTROL_PORT:-28307}
RABBIT_PORT=${SW_OS_RABBIT_PORT:-5672}
MYSQL_PORT=${SW_OS_MYSQL_PORT:-3306}
RPC_TIMEOUT=${SW_OS_RPC_TIMEOUT:-10}
COMPUTE_HOST=${SW_OS_COMPUTE_HOST:-os-compute-1}
CONTROLLER_HOST=os-controller-1

DB_PREFIX=stackwatch_os_
DB_USER=stackwatch_os
DB_PASSWORD=stackwatch-os-db
RABBIT_VHOST=stackwatch_os
RABBIT_USER=stackwatch_os
RABBIT_PASSWORD=stackwatch-os-rabbit
ADMIN_PASSWORD=stackwatch-admin
SERVICE_PASSWORD=stackwatch-service
REGION=RegionOne
CANARY=stackwatch-canary
DATABASES=(keystone placement glance neutron nova_api nova nova_cell0)

# The services' own entry points run on Debian's python (a pyenv python3 may come first on PATH).
PY=/usr/bin/python3
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# nova-compute is not the Debian package (it pulls qemu, ovmf, open-iscsi...): python3-nova has the code and
# $HELPERS/nova-compute runs it. neutron-server is here because nova-api asks neutron for every server's ports
# and security groups, even for a server booted with --nic none.
PACKAGES=(keystone placement-api python3-osc-placement glance-api python3-glanceclient neutron-server
  nova-api nova-conductor nova-scheduler nova-consoleproxy python3-nova python3-openstackclient
  uwsgi-core uwsgi-plugin-python3 haproxy)

# The lifecycle's settings (scripts/lib/service.sh).
SERVICES=(amqp-proxy db-proxy keystone placement glance-api neutron-server nova-api nova-conductor
  nova-scheduler nova-compute nova-novncproxy haproxy) # start order
SERVICE_ALIASES=([glance]=glance-api [neutron]=neutron-server [conductor]=nova-conductor
  [scheduler]=nova-scheduler [compute]=nova-compute [novncproxy]=nova-novncproxy)
SERVICE_LOCK=.openstack.lock
SERVICE_FOREIGN=refuse
SERVICE_NAME_WIDTH=16

usage() {
  cat <<EOF
usage: scripts/openstack.sh COMMAND [SERVICE...]

A real, small OpenStack Zed from Debian 12's packages, each service a plain process with its own config
under \$STACKWATCH_HOME/openstack/etc, logging in oslo.log's file format to
\$STACKWATCH_HOME/openstack/log/<service>.log: keystone, placement, nova-api (uwsgi), glance-api (file
store), neutron-server (ML2, flat, no agents), nova-conductor, nova-scheduler, nova-novncproxy and
nova-compute (fake virt driver: python3-nova and scripts/openstack/nova-compute, not the nova-compute
package). Backends: the machine's MariaDB (databases ${DB_PREFIX}*, user $DB_USER) and RabbitMQ
(vhost and user $RABBIT_VHOST). A canary server "$CANARY" is kept ACTIVE.

Fault proxies (scripts/openstack/fault-proxy.mjs), always in the path:
  amqp-proxy  nova-compute's transport_url -> RabbitMQ      127.0.0.1:$AMQP_PROXY_PORT -> :$RABBIT_PORT
  db-proxy    nova-conductor's [database] -> MariaDB         127.0.0.1:$DB_PROXY_PORT -> :$MYSQL_PORT
Their modes: pass | blackhole (sockets stay open, bytes dropped both ways) | blackhole-up (only the
service's bytes to the server are dropped: deliveries still arrive, replies vanish) | reset (every current
connection closed with RST, then pass) | refuse (current connections reset, new ones refused).

SERVICE (default: all, in this order): ${SERVICES[*]}
(aliases: glance, neutron, conductor, scheduler, compute, novncproxy)

commands:
  install        apt-get install Debian's packages (debconf preseeded so no package touches a
                 database; policy-rc.d so none starts a service); a no-op when installed
  start          install if needed; create the databases, user and vhost; db sync once (marker files
                 in \$STACKWATCH_HOME/openstack/state); start every service and wait for it; create the
                 catalog once; create the canary server if missing and check its console URL.
                 With SERVICE names, only those (processes of ours already running are left alone).
  restart SERVICE...
                 stop, then start the services named (that is how the settings below take effect)
  stop           stop only processes started by this script, by recorded PID (SIGTERM, then SIGKILL
                 after \$SW_STOP_TIMEOUT s); MariaDB and RabbitMQ keep running, data is kept
  status         one line per process: name, up/down, pid, memory, address (exit 3 if one is down)
  env            print export lines: OS_* admin credentials for the openstack CLI and STACKWATCH_OS_*
                 (log directory, proxies' control URLs, HAProxy URLs, canary id):
                 eval "\$(scripts/openstack.sh env)"
  fault amqp|db [MODE]
                 switch a fault proxy's mode (no MODE: print it); the same as
                 curl -X PUT http://127.0.0.1:$AMQP_PROXY_CONTROL_PORT/mode/MODE (db: port $DB_PROXY_CONTROL_PORT)
  canary         create the canary server if missing, wait for ACTIVE, print its console URL
  purge          stop, drop the ${DB_PREFIX}* databases and user, the RabbitMQ vhost and user, and
                 delete \$STACKWATCH_HOME/openstack (the next start begins from empty databases)

settings read when a service starts (e.g. SW_OS_AMQP_HEARTBEAT=0 scripts/openstack.sh restart nova-compute):
  SW_OS_AMQP_HEARTBEAT     nova-compute's [oslo_messaging_rabbit] heartbeat_timeout_threshold
                           (0: heartbeats off, the seed's broken console; unset: oslo's default, 60)
  SW_OS_COMPUTE_HOST       nova-compute's host (default os-compute-1; e.g. 3f2a9c1b7d4e for a container
                           id); the fake hypervisor's node name follows it
  SW_OS_COMPUTE_NODENAME   keep the fake hypervisor's node name fixed instead (what libvirt does when the
                           host is renamed)
  SW_OS_PROXY_HEADERS      nova-api's [oslo_middleware] enable_proxy_headers_parsing (default 1: true, as
                           behind a proxy; 0: oslo's default, X-Forwarded-For ignored)
  SW_OS_RPC_TIMEOUT        nova's rpc_response_timeout (default 10; oslo's default is 60)
Timers shortened for tests: rpc_response_timeout = $RPC_TIMEOUT, service_down_time = 20,
report_interval = 5 (nova); keystone password_hash_rounds = 4.

ports (environment, defaults), all on 127.0.0.1:
  SW_OS_KEYSTONE_PORT=28500  SW_OS_PLACEMENT_PORT=28778  SW_OS_NOVA_PORT=28774
  SW_OS_GLANCE_PORT=28292    SW_OS_NEUTRON_PORT=28696    SW_OS_NOVNC_PORT=28680
  SW_OS_HAPROXY_PORT=28775 (nova-api through HAProxy, no option forwardfor)
  SW_OS_HAPROXY_FWD_PORT=28776 (nova-api through HAProxy with option forwardfor)
  SW_OS_AMQP_PROXY_PORT=28672 SW_OS_AMQP_PROXY_CONTROL_PORT=28673
  SW_OS_DB_PROXY_PORT=28306   SW_OS_DB_PROXY_CONTROL_PORT=28307
  SW_OS_RABBIT_PORT=5672 SW_OS_MYSQL_PORT=3306 (the machine's; root over the socket for set-up)
  STACKWATCH_HOME=$STACKWATCH_HOME  SW_START_TIMEOUT=120 SW_STOP_TIMEOUT=30

files: \$STACKWATCH_HOME/openstack/{etc,state,log,run}: log/<service>.log (oslo.log; the fault proxies'
and HAProxy's own lines too), log/<service>.out (a process's stdout/stderr, uwsgi's request lines),
run/<service>.pid
EOF
}

# ---------------------------------------------------------------- the services' hooks (scripts/lib/service.sh)

DB_URL=mysql+pymysql://$DB_USER:$DB_PASSWORD@127.0.0.1:$MYSQL_PORT
DB_URL_PROXIED=mysql+pymysql://$DB_USER:$DB_PASSWORD@127.0.0.1:$DB_PROXY_PORT
TRANSPORT_URL=rabbit://$RABBIT_USER:$RABBIT_PASSWORD@127.0.0.1:$RABBIT_PORT/$RABBIT_VHOST
TRANSPORT_URL_PROXIED=rabbit://$RABBIT_USER:$RABBIT_PASSWORD@127.0.0.1:$AMQP_PROXY_PORT/$RABBIT_VHOST
KEYSTONE_URL=http://127.0.0.1:$KEYSTONE_PORT/v3

svc_url() {
  case $1 in
    amqp-proxy) echo "127.0.0.1:$AMQP_PROXY_PORT -> :$RABBIT_PORT, control http://127.0.0.1:$AMQP_PROXY_CONTROL_PORT" ;;
    db-proxy) echo "127.0.0.1:$DB_PROXY_PORT -> :$MYSQL_PORT, control http://127.0.0.1:$DB_PROXY_CONTROL_PORT" ;;
    keystone) echo "$KEYSTONE_URL" ;;
    placement) echo "http://127.0.0.1:$PLACEMENT_PORT" ;;
    glance-api) echo "http://127.0.0.1:$GLANCE_PORT" ;;
    neutron-server) echo "http://127.0.0.1:$NEUTRON_PORT" ;;
    nova-api) echo "http://127.0.0.1:$NOVA_PORT/v2.1" ;;
    nova-novncproxy) echo "http://127.0.0.1:$NOVNC_PORT/vnc_auto.html" ;;
    haproxy) echo "http://127.0.0.1:$HAPROXY_PORT (no forwardfor), http://127.0.0.1:$HAPROXY_FWD_PORT (forwardfor)" ;;
  esac
}
svc_ports() {
  case $1 in
    amqp-proxy) echo "$AMQP_PROXY_PORT $AMQP_PROXY_CONTROL_PORT" ;;
    db-proxy) echo "$DB_PROXY_PORT $DB_PROXY_CONTROL_PORT" ;;
    keystone) echo "$KEYSTONE_PORT" ;;
    placement) echo "$PLACEMENT_PORT" ;;
    glance-api) echo "$GLANCE_PORT" ;;
    neutron-server) echo "$NEUTRON_PORT" ;;
    nova-api) echo "$NOVA_PORT" ;;
    nova-novncproxy) echo "$NOVNC_PORT" ;;
    haproxy) echo "$HAPROXY_PORT $HAPROXY_FWD_PORT" ;;
  esac
}
# A string in the command line of every process we start (its own config file): a recycled PID is never ours.
svc_marker() {
  case $1 in
    amqp-proxy|db-proxy) echo "$HELPERS/fault-proxy.mjs --name ${1%-proxy}" ;;
    keystone|placement|nova-api) echo "$ETC/$1/uwsgi.ini" ;;
    haproxy) echo "$ETC/haproxy/haproxy.cfg" ;;
    *) echo "$ETC/$1.conf" ;;
  esac
}
svc_timeout() {
  case $1 in
    amqp-proxy|db-proxy|haproxy) echo 20 ;;
    *) echo "$START_TIMEOUT" ;;
  esac
}

http_ok() { curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null; }
# The nova daemons are ready once they have reported to the database since their launch (report_interval 5 s):
# they reached RabbitMQ, the conductor and the database. The launch time is in run/<service>.launched.
nova_reported() { # BINARY
  local since
  since=$(cat "$RUN_DIR/$1.launched" 2>/dev/null) || return 1
  [[ $(sql "SET time_zone = '+00:00'; SELECT COUNT(*) FROM ${DB_PREFIX}nova.services WHERE \`binary\` = '$1'
    AND deleted = 0 AND COALESCE(updated_at, created_at) >= FROM_UNIXTIME($since)" 2>/dev/null) -ge 1 ]]
}
svc_ready() {
  case $1 in
    amqp-proxy) http_ok "http://127.0.0.1:$AMQP_PROXY_CONTROL_PORT/mode" ;;
    db-proxy) http_ok "http://127.0.0.1:$DB_PROXY_CONTROL_PORT/mode" ;;
    keystone) http_ok "$KEYSTONE_URL" ;;
    placement) http_ok "http://127.0.0.1:$PLACEMENT_PORT/" ;;
    glance-api) http_ok "http://127.0.0.1:$GLANCE_PORT/versions" ;;
    neutron-server) http_ok "http://127.0.0.1:$NEUTRON_PORT/" ;;
    nova-api) http_ok "http://127.0.0.1:$NOVA_PORT/" ;;
    nova-conductor|nova-scheduler|nova-compute) nova_reported "$1" ;;
    nova-novncproxy) port_open "$NOVNC_PORT" ;;
    haproxy) port_open "$HAPROXY_PORT" && port_open "$HAPROXY_FWD_PORT" ;;
  esac
}
# status: a process is up while it runs (a black-holed nova-compute is alive, its service row goes down:
# the status line shows both).
svc_alive() { [[ -n $(service_pids "$1") ]]; }

# ---------------------------------------------------------------- backends: the machine's MariaDB and RabbitMQ

sql() { mysql --no-defaults -u root -N -B -e "$*"; } # root over the socket: the machine's MariaDB

rabbitmqctl_q() { timeout 60 rabbitmqctl -q "$@"; }

ensure_backends() {
  local d stmts=""
  for d in "${DATABASES[@]}"; do stmts+="CREATE DATABASE IF NOT EXISTS \`$DB_PREFIX$d\`; "; done
  sql "$stmts
    CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
    CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
    GRANT ALL PRIVILEGES ON \`${DB_PREFIX//_/\\_}%\`.* TO '$DB_USER'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON \`${DB_PREFIX//_/\\_}%\`.* TO '$DB_USER'@'localhost';" ||
    die "creating the ${DB_PREFIX}* databases and user $DB_USER on MariaDB (mysql -u root over its socket) failed"
  # rabbitmqctl costs a second or two a call (an Erlang VM each): ask once whether all is in place.
  if rabbitmqctl_q list_permissions -p "$RABBIT_VHOST" 2>/dev/null | grep -q "^${RABBIT_USER}[[:space:]]"; then
    return 0
  fi
  log "RabbitMQ: vhost $RABBIT_VHOST, user $RABBIT_USER"
  rabbitmqctl_q add_vhost "$RABBIT_VHOST" >/dev/null 2>&1 || true
  rabbitmqctl_q add_user "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null 2>&1 ||
    rabbitmqctl_q change_password "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null
  rabbitmqctl_q set_permissions -p "$RABBIT_VHOST" "$RABBIT_USER" '.*' '.*' '.*' >/dev/null ||
    die "rabbitmqctl set_permissions -p $RABBIT_VHOST $RABBIT_USER failed"
}

# ---------------------------------------------------------------- install

do_install() {
  local t0 missing
  t0=$(now_ms)
  mapfile -t missing < <(packages_missing "${PACKAGES[@]}")
  if (( ${#missing[@]} == 0 )); then
    log "packages already installed (nova $(dpkg-query -W -f='${Version}' python3-nova))"
    return 0
  fi
  mkdir -p "$LOG_DIR"
  # No package may create or migrate a database (dbconfig-common), or register endpoints: the answers first.
  debconf-set-selections "$HELPERS/preseed.txt" || die "debconf-set-selections $HELPERS/preseed.txt failed"
  apt_install openstack-apt.log "${missing[@]}"
  [[ -x /usr/bin/keystone-wsgi-public && -x /usr/bin/nova-api-wsgi && -x /usr/bin/neutron-server ]] ||
    die "packages installed but keystone-wsgi-public, nova-api-wsgi or neutron-server is missing"
  log "installed ${#missing[@]} packages in $(since "$t0") (nova $(dpkg-query -W -f='${Version}' python3-nova))"
}

# ---------------------------------------------------------------- config files

authtoken() { # USER: the [keystone_authtoken] section of a service that checks tokens
  cat <<EOF
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$KEYSTONE_PORT/
auth_url = http://127.0.0.1:$KEYSTONE_PORT/
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $SERVICE_PASSWORD
service_token_roles_required = true
EOF
}

service_auth() { # SECTION USER: keystone credentials nova uses to call another service
  cat <<EOF
[$1]
region_name = $REGION
auth_type = password
auth_url = $KEYSTONE_URL
project_name = service
project_domain_name = Default
user_domain_name = Default
username = $2
password = $SERVICE_PASSWORD
EOF
}

uwsgi_ini() { # PORT WSGI_FILE PROCESSES THREADS ENV...
  local port=$1 file=$2 processes=$3 threads=$4 e
  shift 4
  cat <<EOF
# generated by scripts/openstack.sh
[uwsgi]
plugins = python3
http-socket = 127.0.0.1:$port
wsgi-file = $file
master = true
processes = $processes
threads = $threads
enable-threads = true
lazy-apps = true
die-on-term = true
buffer-size = 65535
# uwsgi's http-socket has no keep-alive: say so, or keystoneauth reuses a socket uwsgi has closed
# ("Connection reset by peer")
add-header = Connection: close
EOF
  for e in "$@"; do echo "env = $e"; done
}

write_configs() {
  mkdir -p "$ETC"/{keystone,placement,glance-api,neutron-server,nova,nova-api,haproxy} "$STATE"/{lock,nova/instances} \
    "$STATE"/glance/{images,tasks,staging} "$STATE/neutron" "$LOG_DIR" "$RUN_DIR"

  # keystone (uwsgi; its config directory comes from OS_KEYSTONE_CONFIG_DIR)
  cat >"$ETC/keystone/keystone.conf" <<EOF
# generated by scripts/openstack.sh
[DEFAULT]
log_file = $LOG_DIR/keystone.log
[database]
connection = $DB_URL/${DB_PREFIX}keystone
[token]
provider = fernet
[fernet_tokens]
key_repository = $ETC/keystone/fernet-keys
[credential]
key_repository = $ETC/keystone/credential-keys
[cache]
enabled = false
[identity]
# bcrypt cost 4 instead of 12: password checks are the slowest thing keystone does on two busy cores
password_hash_rounds = 4
EOF
  uwsgi_ini "$KEYSTONE_PORT" /usr/bin/keystone-wsgi-public 1 4 \
    "OS_KEYSTONE_CONFIG_DIR=$ETC/keystone" >"$ETC/keystone/uwsgi.ini"

  # placement (uwsgi)
  cat >"$ETC/placement/placement.conf" <<EOF
# generated by scripts/openstack.sh
[DEFAULT]
log_file = $LOG_DIR/placement.log
[placement_database]
connection = $DB_URL/${DB_PREFIX}placement
[api]
auth_strategy = keystone
$(authtoken placement)
EOF
  uwsgi_ini "$PLACEMENT_PORT" /usr/bin/placement-api 1 2 \
    "OS_PLACEMENT_CONFIG_DIR=$ETC/placement" >"$ETC/placement/uwsgi.ini"

  # glance-api, file store
  cp /etc/glance/glance-api-paste.ini "$ETC/glance-api/"
  cat >"$ETC/glance-api.conf" <<EOF
# generated by scripts/openstack.sh
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $GLANCE_PORT
workers = 1
log_file = $LOG_DIR/glance-api.log
enabled_backends = file:file
[database]
connection = $DB_URL/${DB_PREFIX}glance
$(authtoken glance)
[paste_deploy]
flavor = keystone
config_file = $ETC/glance-api/glance-api-paste.ini
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = $STATE/glance/images
[os_glance_tasks_store]
filesystem_store_datadir = $STATE/glance/tasks
[os_glance_staging_store]
filesystem_store_datadir = $STATE/glance/staging
[oslo_concurrency]
lock_path = $STATE/lock
EOF

  # neutron-server alone: ML2, flat, no mechanism drivers, no agents; it answers nova's port and
  # security-group queries
  cp /etc/neutron/api-paste.ini "$ETC/neutron-server/"
  cat >"$ETC/neutron-server.conf" <<EOF
# generated by scripts/openstack.sh
[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $TRANSPORT_URL
bind_host = 127.0.0.1
bind_port = $NEUTRON_PORT
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
api_paste_config = $ETC/neutron-server/api-paste.ini
log_file = $LOG_DIR/neutron-server.log
state_path = $STATE/neutron
[database]
connection = $DB_URL/${DB_PREFIX}neutron
$(authtoken neutron)
[oslo_concurrency]
lock_path = $STATE/lock
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
EOF

  # nova: nova.conf for every nova process (no database: nova-compute must have none, or it logs "No DB
  # access allowed in nova-compute"), nova-db.conf for the others, and one file per service on top
  cp /etc/nova/api-paste.ini "$ETC/nova/"
  cat >"$ETC/nova/nova.conf" <<EOF
# generated by scripts/openstack.sh
[DEFAULT]
transport_url = $TRANSPORT_URL
host = $CONTROLLER_HOST
my_ip = 127.0.0.1
state_path = $STATE/nova
instances_path = $STATE/nova/instances
compute_driver = fake.FakeDriver
enabled_apis = osapi_compute
osapi_compute_workers = 1
use_rootwrap_daemon = false
# timers shortened for tests: a lost reply, a silent service and a down service show in seconds
rpc_response_timeout = $RPC_TIMEOUT
service_down_time = 20
report_interval = 5
[api]
auth_strategy = keystone
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 10
$(authtoken nova)
$(service_auth placement placement)
$(service_auth neutron neutron)
[glance]
api_servers = http://127.0.0.1:$GLANCE_PORT
[vnc]
enabled = true
server_listen = 127.0.0.1
server_proxyclient_address = 127.0.0.1
novncproxy_host = 127.0.0.1
novncproxy_port = $NOVNC_PORT
novncproxy_base_url = http://127.0.0.1:$NOVNC_PORT/vnc_auto.html
[oslo_concurrency]
lock_path = $STATE/lock
[wsgi]
api_paste_config = $ETC/nova/api-paste.ini
EOF
  cat >"$ETC/nova/nova-db.conf" <<EOF
# generated by scripts/openstack.sh
[api_database]
connection = $DB_URL/${DB_PREFIX}nova_api
[database]
connection = $DB_URL/${DB_PREFIX}nova
EOF
  # nova-conductor reaches its cell database through db-proxy (scripts/openstack.sh fault db MODE)
  cat >"$ETC/nova-conductor.conf" <<EOF
# generated by scripts/openstack.sh: after nova.conf and nova-db.conf
[database]
connection = $DB_URL_PROXIED/${DB_PREFIX}nova
EOF
  printf '# generated by scripts/openstack.sh: after nova.conf and nova-db.conf\n' >"$ETC/nova-scheduler.conf"
  printf '# generated by scripts/openstack.sh: after nova.conf and nova-db.conf\n' >"$ETC/nova-novncproxy.conf"
  # (nova-compute's and nova-api's files are written when they start: they hold the SW_OS_* settings)

  # HAProxy in front of nova-api: one frontend without option forwardfor (nova-api sees HAProxy's address
  # only), one with it
  cat >"$ETC/haproxy/haproxy.cfg" <<EOF
# generated by scripts/openstack.sh
global
    maxconn 256
    log stdout format iso local0 info
defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    # longer than a console request that waits for an RPC timeout
    timeout client 180s
    timeout server 180s
frontend nova-api-plain
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend nova-api
frontend nova-api-forwardfor
    bind 127.0.0.1:$HAPROXY_FWD_PORT
    option forwardfor
    default_backend nova-api
backend nova-api
    server nova-api 127.0.0.1:$NOVA_PORT
EOF

  cat >"$OS_DIR/adminrc" <<EOF
$(print_env)
EOF
}

write_compute_conf() { # the SW_OS_* settings nova-compute starts with
  {
    printf '# generated by scripts/openstack.sh at its start: after nova.conf (no database settings)\n'
    printf '[DEFAULT]\nhost = %s\n# through amqp-proxy: scripts/openstack.sh fault amqp MODE\ntransport_url = %s\n' \
      "$COMPUTE_HOST" "$TRANSPORT_URL_PROXIED"
    if [[ -n ${SW_OS_AMQP_HEARTBEAT:-} ]]; then
      [[ $SW_OS_AMQP_HEARTBEAT =~ ^[0-9]+$ ]] || die "SW_OS_AMQP_HEARTBEAT=$SW_OS_AMQP_HEARTBEAT: expected seconds (0: off)"
      printf '[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = %s\n' "$SW_OS_AMQP_HEARTBEAT"
    fi
  } >"$ETC/nova-compute.conf"
}

write_nova_api_conf() {
  {
    printf '# generated by scripts/openstack.sh at its start: after nova.conf and nova-db.conf\n'
    printf '[DEFAULT]\nlog_file = %s\n' "$LOG_DIR/nova-api.log"
    if [[ ${SW_OS_PROXY_HEADERS:-1} == 1 ]]; then
      printf '[oslo_middleware]\n# X-Forwarded-For from HAProxy becomes the client address\n'
      printf 'enable_proxy_headers_parsing = true\n'
    fi
  } >"$ETC/nova-api/nova-api.conf"
  # nova monkey-patches with eventlet: one thread a process, and two processes, so a request that waits for an
  # RPC timeout (a broken console) does not hold up the others
  uwsgi_ini "$NOVA_PORT" /usr/bin/nova-api-wsgi 2 1 "OS_NOVA_CONFIG_DIR=$ETC" \
    "OS_NOVA_CONFIG_FILES=nova/api-paste.ini;nova/nova.conf;nova/nova-db.conf;nova-api/nova-api.conf" \
    >"$ETC/nova-api/uwsgi.ini"
}

# ---------------------------------------------------------------- db sync (once: a marker file per step)

NOVA_MANAGE=(nova-manage --config-file "$ETC/nova/nova.conf" --config-file "$ETC/nova/nova-db.conf")

sync_step() { # NAME CMD...: run it unless done before; output in log/dbsync.log
  local name=$1 t0 marker=$STATE/dbsync-$1.done
  shift
  [[ -f $marker ]] && return 0
  t0=$(now_ms)
  printf '=== %s %s\n' "$(date -Is)" "$*" >>"$LOG_DIR/dbsync.log"
  if ! "$@" >>"$LOG_DIR/dbsync.log" 2>&1; then
    show_log_tail "$LOG_DIR/dbsync.log"
    die "db sync step $name failed (log: $LOG_DIR/dbsync.log)"
  fi
  touch "$marker"
  log "db sync $name in $(since "$t0")"
}

keystone_sync() {
  local conf=$ETC/keystone/keystone.conf
  keystone-manage --config-file "$conf" db_sync &&
    keystone-manage --config-file "$conf" fernet_setup --keystone-user root --keystone-group root &&
    keystone-manage --config-file "$conf" credential_setup --keystone-user root --keystone-group root &&
    keystone-manage --config-file "$conf" bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
      --bootstrap-admin-url "$KEYSTONE_URL/" --bootstrap-internal-url "$KEYSTONE_URL/" \
      --bootstrap-public-url "$KEYSTONE_URL/" --bootstrap-region-id "$REGION"
}

nova_sync() {
  "${NOVA_MANAGE[@]}" api_db sync &&
    "${NOVA_MANAGE[@]}" cell_v2 map_cell0 --database_connection "$DB_URL/${DB_PREFIX}nova_cell0" &&
    # grep without -q reads to the end: -q exits at the first match, and nova-manage, still writing, dies of the
    # broken pipe (pipefail then says "no cell1", and create_cell fails: it exists).
    { "${NOVA_MANAGE[@]}" cell_v2 list_cells | grep ' cell1 ' >/dev/null ||
      "${NOVA_MANAGE[@]}" cell_v2 create_cell --name=cell1 --verbose; } &&
    "${NOVA_MANAGE[@]}" db sync
}

db_sync() {
  local t0; t0=$(now_ms)
  [[ -f $STATE/dbsync-nova.done ]] && return 0
  log "db sync (first start on empty databases)"
  sync_step keystone keystone_sync
  sync_step placement placement-manage --config-file "$ETC/placement/placement.conf" db sync
  sync_step glance glance-manage --config-file "$ETC/glance-api.conf" db_sync
  sync_step neutron neutron-db-manage --config-file "$ETC/neutron-server.conf" upgrade head
  sync_step nova nova_sync
  log "db sync done in $(since "$t0")"
}

# ---------------------------------------------------------------- launch

launch_amqp_proxy() {
  launch "$LOG_DIR/amqp-proxy.log" node "$HELPERS/fault-proxy.mjs" --name amqp \
    --listen "127.0.0.1:$AMQP_PROXY_PORT" --upstream "127.0.0.1:$RABBIT_PORT" --control "127.0.0.1:$AMQP_PROXY_CONTROL_PORT"
}
launch_db_proxy() {
  launch "$LOG_DIR/db-proxy.log" node "$HELPERS/fault-proxy.mjs" --name db \
    --listen "127.0.0.1:$DB_PROXY_PORT" --upstream "127.0.0.1:$MYSQL_PORT" --control "127.0.0.1:$DB_PROXY_CONTROL_PORT"
}
launch_keystone() { launch "$LOG_DIR/keystone.out" uwsgi --ini "$ETC/keystone/uwsgi.ini"; }
launch_placement() { launch "$LOG_DIR/placement.out" uwsgi --ini "$ETC/placement/uwsgi.ini"; }
launch_glance_api() {
  launch "$LOG_DIR/glance-api.out" glance-api --config-file "$ETC/glance-api.conf"
}
launch_neutron_server() {
  launch "$LOG_DIR/neutron-server.out" neutron-server --config-file "$ETC/neutron-server.conf"
}
launch_nova_api() {
  write_nova_api_conf
  launch "$LOG_DIR/nova-api.out" uwsgi --ini "$ETC/nova-api/uwsgi.ini"
}
launch_nova_daemon() { # SERVICE: nova-conductor, nova-scheduler, nova-novncproxy
  local svc=$1 extra=()
  [[ $svc == nova-novncproxy ]] && extra=(--web /usr/share/novnc)
  date +%s >"$RUN_DIR/$svc.launched"
  launch "$LOG_DIR/$svc.out" "$svc" --config-file "$ETC/nova/nova.conf" --config-file "$ETC/nova/nova-db.conf" \
    --config-file "$ETC/$svc.conf" --log-file "$LOG_DIR/$svc.log" ${extra[@]+"${extra[@]}"}
}
launch_nova_conductor() { launch_nova_daemon nova-conductor; }
launch_nova_scheduler() { launch_nova_daemon nova-scheduler; }
launch_nova_novncproxy() { launch_nova_daemon nova-novncproxy; }
launch_nova_compute() {
  write_compute_conf
  date +%s >"$RUN_DIR/nova-compute.launched"
  if [[ -n ${SW_OS_COMPUTE_NODENAME:-} ]]; then log "nova-compute: host $COMPUTE_HOST, node name $SW_OS_COMPUTE_NODENAME"; fi
  launch "$LOG_DIR/nova-compute.out" env ${SW_OS_COMPUTE_NODENAME:+SW_OS_COMPUTE_NODENAME="$SW_OS_COMPUTE_NODENAME"} \
    "$PY" "$HELPERS/nova-compute" --config-file "$ETC/nova/nova.conf" --config-file "$ETC/nova-compute.conf" \
    --log-file "$LOG_DIR/nova-compute.log"
}
launch_haproxy() { launch "$LOG_DIR/haproxy.log" haproxy -db -f "$ETC/haproxy/haproxy.cfg"; }

# ---------------------------------------------------------------- the steps around the starts

CLOUD=("$PY" "$HELPERS/cloud.py")
cloud() { # the admin's REST calls (scripts/openstack/cloud.py): one Python process instead of many CLI calls
  env OS_AUTH_URL="$KEYSTONE_URL" OS_USERNAME=admin OS_PASSWORD="$ADMIN_PASSWORD" OS_PROJECT_NAME=admin \
    OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME="$REGION" \
    CLOUD_SERVICE_PASSWORD="$SERVICE_PASSWORD" CLOUD_NOVA_CONFIGS="$ETC/nova/nova.conf:$ETC/nova/nova-db.conf" \
    "${CLOUD[@]}" "$@"
}

PREPARED=0
prepare() { # packages, databases, vhost, configs, db sync: once a run, before the first service starts
  (( PREPARED )) && return 0
  do_install
  ensure_backends
  write_configs
  db_sync
  PREPARED=1
}

# Service users, endpoints: right after keystone, before anything that authenticates (nova-scheduler and
# -conductor exit with 401 if their users do not exist yet). Redone when a port changed.
after_start_keystone() {
  local want t0
  want="$KEYSTONE_PORT $PLACEMENT_PORT $NOVA_PORT $GLANCE_PORT $NEUTRON_PORT"
  [[ $(cat "$STATE/catalog.done" 2>/dev/null) == "$want" ]] && return 0
  t0=$(now_ms)
  cloud catalog compute="http://127.0.0.1:$NOVA_PORT/v2.1" placement="http://127.0.0.1:$PLACEMENT_PORT" \
    image="http://127.0.0.1:$GLANCE_PORT" network="http://127.0.0.1:$NEUTRON_PORT" >>"$LOG_DIR/cloud.log" 2>&1 || {
    show_log_tail "$LOG_DIR/cloud.log"
    die "creating the catalog failed (log: $LOG_DIR/cloud.log)"
  }
  echo "$want" >"$STATE/catalog.done"
  log "catalog: service users and endpoints in $(since "$t0")"
}

# neutron 21.0.0: when a fresh API worker's first request is GET /v2.0/ports it fails ("Port has no attribute
# port_forwardings") and nova-api answers 500 to every GET /servers; any other query first avoids it.
after_start_neutron_server() {
  (( SERVICE_FRESH )) || return 0
  cloud neutron-warmup >>"$LOG_DIR/cloud.log" 2>&1 || log "warning: neutron warm-up query failed (log: $LOG_DIR/cloud.log)"
}

ensure_canary() {
  local t0 id
  t0=$(now_ms)
  id=$(cloud canary "$CANARY" 2>>"$LOG_DIR/cloud.log") || {
    show_log_tail "$LOG_DIR/cloud.log"
    die "the canary server $CANARY is not ACTIVE with a console (log: $LOG_DIR/cloud.log)"
  }
  echo "${id%% *}" >"$STATE/canary.id"
  log "canary $CANARY ACTIVE, console URL works, in $(since "$t0") (id ${id%% *})"
}

# ---------------------------------------------------------------- commands

install_all() { do_install; }

start_all() {
  prepare
  service_start_all "$@"
  # the whole cloud: the canary too (a restart of a few services leaves it be)
  if (( ! SERVICE_NAMED )); then
    ensure_canary
    log "cloud ready in $(since "$SERVICE_T0"): eval \"\$(scripts/openstack.sh env)\"; openstack server list"
  fi
}

stop_all() { service_stop_all "$@"; }

group_mem() { # PID: RSS of the process and its children (uwsgi workers, oslo.service workers)
  local rss
  rss=$(ps -e -o pid=,ppid=,rss= | awk -v root="$1" '$1 == root || $2 == root { s += $3 } END { print int(s / 1024) }')
  printf 'rss=%sM' "$rss"
}

svc_status_detail() { # SVC PID
  local mem="" state=""
  if [[ $2 != - ]]; then mem=$(group_mem "$2"); fi
  case $1 in
    amqp-proxy) state="mode=$(proxy_mode "$AMQP_PROXY_CONTROL_PORT") " ;;
    db-proxy) state="mode=$(proxy_mode "$DB_PROXY_CONTROL_PORT") " ;;
    nova-conductor|nova-scheduler|nova-compute) state="$(service_row "$1") " ;;
  esac
  printf '%-9s %s%s' "$mem" "$state" "$(svc_url "$1")"
}

proxy_mode() { # CONTROL_PORT
  curl -fsS --max-time 3 "http://127.0.0.1:$1/mode" 2>/dev/null | sed -n 's/.*"mode":"\([a-z-]*\)".*/\1/p'
}

service_row() { # BINARY: "host=H reported=Ns-ago" of its newest service row (the database's view of it)
  sql "SET time_zone = '+00:00'; SELECT CONCAT('host=', host, ' reported=',
      TIMESTAMPDIFF(SECOND, COALESCE(updated_at, created_at), UTC_TIMESTAMP()), 's-ago')
    FROM ${DB_PREFIX}nova.services WHERE \`binary\` = '$1' AND deleted = 0
    ORDER BY COALESCE(updated_at, created_at) DESC LIMIT 1" 2>/dev/null || true
}

print_env() {
  cat <<EOF
export OS_AUTH_URL=$KEYSTONE_URL
export OS_USERNAME=admin
export OS_PASSWORD=$ADMIN_PASSWORD
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=$REGION
export OS_IDENTITY_API_VERSION=3
export STACKWATCH_OS_LOG_DIR=$LOG_DIR
export STACKWATCH_OS_NOVA_URL=http://127.0.0.1:$NOVA_PORT
export STACKWATCH_OS_HAPROXY_URL=http://127.0.0.1:$HAPROXY_PORT
export STACKWATCH_OS_HAPROXY_FORWARDFOR_URL=http://127.0.0.1:$HAPROXY_FWD_PORT
export STACKWATCH_OS_AMQP_PROXY_CONTROL=http://127.0.0.1:$AMQP_PROXY_CONTROL_PORT
export STACKWATCH_OS_DB_PROXY_CONTROL=http://127.0.0.1:$DB_PROXY_CONTROL_PORT
export STACKWATCH_OS_NOVNC_URL=http://127.0.0.1:$NOVNC_PORT
export STACKWATCH_OS_CANARY_NAME=$CANARY
export STACKWATCH_OS_CANARY_ID=$(cat "$STATE/canary.id" 2>/dev/null || true)
EOF
}

cmd_restart() {
  [[ $# -gt 0 ]] || die "usage: scripts/openstack.sh restart SERVICE... (see --help)"
  service_main stop "$@"
  service_main start "$@"
}

cmd_fault() {
  local which=${1:-} mode=${2:-} port
  case $which in
    amqp) port=$AMQP_PROXY_CONTROL_PORT ;;
    db) port=$DB_PROXY_CONTROL_PORT ;;
    *) die "usage: scripts/openstack.sh fault amqp|db [pass|blackhole|blackhole-up|reset|refuse]" ;;
  esac
  [[ -n $(service_pids "$which-proxy") ]] || die "$which-proxy is not running (scripts/openstack.sh start)"
  if [[ -z $mode ]]; then
    curl -fsS --max-time 5 "http://127.0.0.1:$port/mode"
    echo
    return 0
  fi
  local answer
  answer=$(curl -sS --max-time 5 -X PUT "http://127.0.0.1:$port/mode/$mode") || die "$which-proxy: no answer on 127.0.0.1:$port"
  [[ $answer == *'"mode"'* ]] || die "$which-proxy: $answer"
  log "$which-proxy: $answer"
}

cmd_canary() { take_lock "$SERVICE_LOCK"; ensure_canary; }

cmd_purge() {
  take_lock "$SERVICE_LOCK"
  service_stop_all "${SERVICES[@]}"
  local d stmts=""
  for d in "${DATABASES[@]}"; do stmts+="DROP DATABASE IF EXISTS \`$DB_PREFIX$d\`; "; done
  sql "$stmts DROP USER IF EXISTS '$DB_USER'@'127.0.0.1'; DROP USER IF EXISTS '$DB_USER'@'localhost';" &&
    log "dropped databases ${DB_PREFIX}* and user $DB_USER"
  rabbitmqctl_q delete_vhost "$RABBIT_VHOST" >/dev/null 2>&1 || true
  rabbitmqctl_q delete_user "$RABBIT_USER" >/dev/null 2>&1 || true
  log "deleted RabbitMQ vhost $RABBIT_VHOST and user $RABBIT_USER"
  rm -rf "$OS_DIR"
  log "removed $OS_DIR"
}

service_main "$@"
