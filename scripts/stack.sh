#!/usr/bin/env bash
# Local "real" stack for stackwatch: Kafka (KRaft), Elasticsearch, Alertmanager and a
# webhook receiver standing in for the pager; and, when named, the secure Kafka and
# Elasticsearch and a RabbitMQ node of the tests' own. Everything is installed by this script,
# cached under $STACKWATCH_HOME (default <repo>/.stack, git-ignored). Run with --help.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELPERS=$SCRIPT_DIR/stack

LOG_TAG=stack
# shellcheck source=lib/service.sh
source "$SCRIPT_DIR/lib/service.sh"

# Pinned versions (override only if you know what you are doing).
KAFKA_VERSION=${SW_KAFKA_VERSION:-4.1.1}
ES_VERSION=${SW_ES_VERSION:-8.19.21}
ES_ARTIFACT=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip

KAFKA_PORT=${SW_KAFKA_PORT:-29092}
KAFKA_CONTROLLER_PORT=${SW_KAFKA_CONTROLLER_PORT:-29093}
ES_PORT=${SW_ES_PORT:-29200}
ES_TRANSPORT_PORT=${SW_ES_TRANSPORT_PORT:-29300}
KAFKA_SECURE_PORT=${SW_KAFKA_SECURE_PORT:-29096}                       # kafka-secure: SASL_SSL
KAFKA_SECURE_CONTROLLER_PORT=${SW_KAFKA_SECURE_CONTROLLER_PORT:-29097}
KAFKA_SASL_PLAINTEXT_PORT=${SW_KAFKA_SASL_PLAINTEXT_PORT:-29098}       # kafka-secure: SASL_PLAINTEXT
ES_SECURE_PORT=${SW_ES_SECURE_PORT:-29201}
ES_SECURE_TRANSPORT_PORT=${SW_ES_SECURE_TRANSPORT_PORT:-29301}
AM_PORT=${SW_ALERTMANAGER_PORT:-29094}
WEBHOOK_PORT=${SW_WEBHOOK_PORT:-29095}
RABBITMQ_PORT=${SW_RABBITMQ_PORT:-29672}           # rabbitmq: AMQP
RABBITMQ_DIST_PORT=${SW_RABBITMQ_DIST_PORT:-29673} # rabbitmq: Erlang distribution (rabbitmqctl)

ES_USER=${SW_ES_USER:-stackwatch}
AM_BIN=${SW_ALERTMANAGER_BIN:-/usr/bin/prometheus-alertmanager}

KAFKA_DIR=$STACKWATCH_HOME/kafka
ES_BASE=$STACKWATCH_HOME/elasticsearch # may move, see resolve_es_base
ES_HOME=$ES_BASE/elasticsearch-$ES_VERSION
# elasticsearch-secure: a second node from the same unpacked distribution, with its own config (ES_PATH_CONF),
# data and logs under $ESS_BASE, security on (TLS on HTTP, user elastic).
ESS_BASE=$ES_BASE/secure # follows ES_BASE, see resolve_es_base
ESS_HOME=$ESS_BASE/elasticsearch-$ES_VERSION
ESS_PLUGIN_SRC=$HELPERS/es-security-analysis
ESS_USER=elastic
# kafka-secure: a second single-node Kafka (own KRaft cluster) with SASL (PLAIN, SCRAM-SHA-256/512) over TLS and
# over plain TCP, user stackwatch.
KS_DIR=$STACKWATCH_HOME/kafka-secure
KS_USER=stackwatch
# The secure services' TLS material (a CA of our own, one certificate for 127.0.0.1/localhost) and passwords.
TLS_DIR=$STACKWATCH_HOME/tls
AM_DIR=$STACKWATCH_HOME/alertmanager
WEBHOOK_SCRIPT=$REPO_DIR/scripts/webhook-receiver.mjs
# rabbitmq: a node of Debian's rabbitmq-server with everything under $RABBITMQ_DIR (its Erlang cookie in home/),
# never the host's node on 5672 (which the live OpenStack uses): the AMQP tests stop and start this one.
RABBITMQ_DIR=$STACKWATCH_HOME/rabbitmq
RABBITMQ_NODE=stackwatch@localhost
RABBITMQ_BIN=/usr/lib/rabbitmq/bin # not /usr/sbin's wrappers, which run them as the rabbitmq user

# The lifecycle's settings (scripts/lib/service.sh).
SERVICES=(webhook alertmanager kafka elasticsearch) # start order; stop is the reverse
# Started only when named: JVMs of their own (512 MiB heap each) that only the security tests need, and the RabbitMQ
# node that the AMQP tests stop and start.
SERVICES_OPTIONAL=(kafka-secure elasticsearch-secure rabbitmq)
SERVICE_ALIASES=([es]=elasticsearch [es-secure]=elasticsearch-secure)
SERVICE_LOCK=.lock
# A Kafka or an Elasticsearch already answering on its port (a developer's own) serves the tests just as well.
SERVICE_FOREIGN=leave
SERVICE_NAME_WIDTH=13

usage() {
  cat <<EOF
usage: scripts/stack.sh COMMAND [SERVICE...]

Installs (cached), starts, stops and reports the local stack used by stackwatch's
integration tests and benchmarks. SERVICE: kafka, elasticsearch, alertmanager,
webhook (default: all four); and, only when named, for the security tests:
elasticsearch-secure (a second Elasticsearch with security on: HTTPS with a CA of its
own, user elastic) and kafka-secure (a second Kafka: SASL PLAIN/SCRAM over TLS and
over TCP, user stackwatch). Their CA and passwords: scripts/stack.sh env. And, when
named, rabbitmq: a node of Debian's RabbitMQ of the tests' own (node $RABBITMQ_NODE,
guest/guest, data and cookie in \$STACKWATCH_HOME/rabbitmq), which the AMQP tests stop
and start; the host's own RabbitMQ is never touched.

commands:
  install [SERVICE...]  download/install only (idempotent; cached in \$STACKWATCH_HOME)
  start   [SERVICE...]  install if needed, start, wait until ready (exit 1 with the
                        log tail if not ready in time); a service already answering
                        on its port (ours or anyone's) is left alone
  stop    [SERVICE...]  stop only processes started by this script, by recorded PID
                        (SIGTERM, then SIGKILL after \$SW_STOP_TIMEOUT s)
  status  [SERVICE...]  one line per service: name, up/down, pid, url
                        (exit 0 if all listed services are up, 3 otherwise)
  env                   print STACKWATCH_* variables: eval "\$(scripts/stack.sh env)"

environment (defaults):
  STACKWATCH_HOME=$STACKWATCH_HOME
  SW_KAFKA_PORT=29092 SW_KAFKA_CONTROLLER_PORT=29093 SW_ES_PORT=29200
  SW_ES_TRANSPORT_PORT=29300 SW_ALERTMANAGER_PORT=29094 SW_WEBHOOK_PORT=29095
  SW_ES_SECURE_PORT=29201 SW_ES_SECURE_TRANSPORT_PORT=29301 (elasticsearch-secure)
  SW_KAFKA_SECURE_PORT=29096 (SASL_SSL) SW_KAFKA_SASL_PLAINTEXT_PORT=29098
  SW_KAFKA_SECURE_CONTROLLER_PORT=29097 (kafka-secure)
  SW_RABBITMQ_PORT=29672 (AMQP) SW_RABBITMQ_DIST_PORT=29673 (rabbitmqctl) (rabbitmq)
  SW_START_TIMEOUT  readiness timeout in seconds (kafka 120, elasticsearch 180,
                    alertmanager 30, webhook 15, rabbitmq 60)
  SW_STOP_TIMEOUT=30  SW_ES_USER=stackwatch (Elasticsearch refuses to run as root)
  SW_ES_JAVA_HOME   JDK for Elasticsearch (default: the system java, 17+)
  SW_KAFKA_VERSION=$KAFKA_VERSION SW_ES_VERSION=$ES_VERSION

files: \$STACKWATCH_HOME/log/<svc>.log, \$STACKWATCH_HOME/run/<svc>.pid
EOF
}

# ---------------------------------------------------------------- the services' hooks (scripts/lib/service.sh)

svc_port() {
  case $1 in
    kafka) echo "$KAFKA_PORT" ;;
    kafka-secure) echo "$KAFKA_SECURE_PORT" ;;
    elasticsearch) echo "$ES_PORT" ;;
    elasticsearch-secure) echo "$ES_SECURE_PORT" ;;
    alertmanager) echo "$AM_PORT" ;;
    webhook) echo "$WEBHOOK_PORT" ;;
    rabbitmq) echo "$RABBITMQ_PORT" ;;
  esac
}
svc_url() {
  case $1 in
    kafka) echo "127.0.0.1:$KAFKA_PORT" ;;
    kafka-secure) echo "127.0.0.1:$KAFKA_SECURE_PORT (SASL_SSL), 127.0.0.1:$KAFKA_SASL_PLAINTEXT_PORT (SASL_PLAINTEXT)" ;;
    elasticsearch-secure) echo "https://127.0.0.1:$ES_SECURE_PORT" ;;
    rabbitmq) echo "amqp://127.0.0.1:$RABBITMQ_PORT (node $RABBITMQ_NODE)" ;;
    *) echo "http://127.0.0.1:$(svc_port "$1")" ;;
  esac
}
svc_ports() { # every port the service binds
  case $1 in
    kafka) echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
    kafka-secure) echo "$KAFKA_SECURE_PORT $KAFKA_SECURE_CONTROLLER_PORT $KAFKA_SASL_PLAINTEXT_PORT" ;;
    elasticsearch) echo "$ES_PORT $ES_TRANSPORT_PORT" ;;
    elasticsearch-secure) echo "$ES_SECURE_PORT $ES_SECURE_TRANSPORT_PORT" ;;
    rabbitmq) echo "$RABBITMQ_PORT $RABBITMQ_DIST_PORT" ;;
    *) svc_port "$1" ;;
  esac
}
svc_timeout() {
  if [[ -n ${SW_START_TIMEOUT:-} ]]; then echo "$SW_START_TIMEOUT"; return; fi
  case $1 in
    kafka|kafka-secure) echo 120 ;; elasticsearch|elasticsearch-secure) echo 180 ;; alertmanager) echo 30 ;; webhook) echo 15 ;;
    rabbitmq) echo 60 ;;
  esac
}
# A string that must appear in the command line of a process we started; guards
# against killing an unrelated process that inherited a recycled PID.
svc_marker() {
  case $1 in
    kafka) echo "$KAFKA_DIR/server.properties" ;;
    kafka-secure) echo "$KS_DIR/server.properties" ;;
    elasticsearch) echo "$ES_HOME" ;;
    elasticsearch-secure) echo "$ESS_BASE/tmp" ;; # ES_TMPDIR: in the launcher's and the server's command line
    alertmanager) echo "$AM_DIR/alertmanager.yml" ;;
    webhook) echo "$WEBHOOK_SCRIPT" ;;
    rabbitmq) echo "-stackwatch_home $RABBITMQ_DIR" ;; # an argument of our own, in the script's and erl's
  esac
}

# ---------------------------------------------------------------- probes


http_ok() { # URL [max seconds]
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time "${2:-3}" "$1" 2>/dev/null
  else
    node -e 'fetch(process.argv[1],{signal:AbortSignal.timeout(+process.argv[2]*1000)})
      .then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$1" "${2:-3}"
  fi
}

# https_es_ok PATH: the secure node answers PATH over HTTPS, verified with our CA, as user elastic. The
# password goes to curl on stdin, not on its command line.
https_es_ok() {
  local url="https://127.0.0.1:$ES_SECURE_PORT$1" pw
  [[ -s $TLS_DIR/ca.crt && -s $TLS_DIR/elastic.password ]] || return 1
  pw=$(<"$TLS_DIR/elastic.password")
  if command -v curl >/dev/null 2>&1; then
    printf 'user = "%s:%s"\n' "$ESS_USER" "$pw" |
      curl -fsS -o /dev/null --max-time 3 --cacert "$TLS_DIR/ca.crt" -K - "$url" 2>/dev/null
  else
    SW_AUTH="$ESS_USER:$pw" node -e 'const https=require("https"),fs=require("fs");
      const r=https.get(process.argv[1],{ca:fs.readFileSync(process.argv[2]),auth:process.env.SW_AUTH,timeout:3000},
        (res)=>process.exit(res.statusCode<300?0:1));r.on("error",()=>process.exit(1));r.on("timeout",()=>process.exit(1))' \
      "$url" "$TLS_DIR/ca.crt"
  fi
}

# svc_ready: what "start" waits for. svc_alive: what "status" calls up.
# (The integ-test-zip has no rest-root module: GET / and HEAD / answer 405, so
# Elasticsearch is probed on /_cluster/health.)
svc_ready() {
  case $1 in
    kafka) port_open "$KAFKA_PORT" && node "$HELPERS/kafka-ping.mjs" 127.0.0.1 "$KAFKA_PORT" 2000 ;;
    # ApiVersions is answered before authentication: over TLS (verified with our CA), and over plain TCP.
    kafka-secure) port_open "$KAFKA_SECURE_PORT" && [[ -s $TLS_DIR/ca.crt ]] &&
      SW_PING_CA="$TLS_DIR/ca.crt" node "$HELPERS/kafka-ping.mjs" 127.0.0.1 "$KAFKA_SECURE_PORT" 2000 &&
      node "$HELPERS/kafka-ping.mjs" 127.0.0.1 "$KAFKA_SASL_PLAINTEXT_PORT" 2000 ;;
    elasticsearch) http_ok "http://127.0.0.1:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" 3 ;;
    elasticsearch-secure) https_es_ok "/_cluster/health?wait_for_status=yellow&timeout=1s" ;;
    alertmanager) http_ok "http://127.0.0.1:$AM_PORT/-/ready" ;;
    webhook) http_ok "http://127.0.0.1:$WEBHOOK_PORT/healthz" ;;
    # RabbitMQ opens its AMQP listener once it has booted (and closes it on stop_app).
    rabbitmq) port_open "$RABBITMQ_PORT" ;;
  esac
}
svc_alive() {
  case $1 in
    elasticsearch) http_ok "http://127.0.0.1:$ES_PORT/_cluster/health" ;;
    elasticsearch-secure) https_es_ok /_cluster/health ;;
    *) svc_ready "$1" ;;
  esac
}

# ---------------------------------------------------------------- processes

# A service's pid files, main process first (Elasticsearch: server, then launcher).
svc_pidfiles() {
  echo "$RUN_DIR/$1.pid"
  if [[ $1 == elasticsearch* ]]; then echo "$RUN_DIR/$1-launcher.pid"; fi
}

# ---------------------------------------------------------------- install helpers

need_cmd() { # COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null 2>&1 || apt_install apt.log "$2"
}

mvn_run() { # LOGNAME ARGS...: quiet, batch mode, output to $LOG_DIR/LOGNAME
  local logname=$1; shift
  need_cmd java openjdk-17-jdk-headless
  need_cmd mvn maven
  if ! mvn -B -q -Dstyle.color=never -f "$HELPERS/kafka-pom.xml" "$@" >"$LOG_DIR/$logname" 2>&1; then
    show_log_tail "$LOG_DIR/$logname"
    die "maven failed: mvn $*"
  fi
}

# Java for Elasticsearch: 8.x runs on 17+, 9.x needs 21+.
es_java_home() {
  if [[ -n ${SW_ES_JAVA_HOME:-} ]]; then echo "$SW_ES_JAVA_HOME"; return; fi
  local min=17 j v best="" bestv=0
  [[ $ES_VERSION == 8.* ]] || min=21
  for j in "$(readlink -f "$(command -v java 2>/dev/null || echo /nonexistent)")" /usr/lib/jvm/*/bin/java; do
    [[ -x $j ]] || continue
    v=$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')
    [[ -n $v ]] || continue
    if (( v >= min )); then
      if [[ $min == 17 ]]; then best=$j; break; fi # 8.x: the system java is fine
      if (( v > bestv )); then best=$j; bestv=$v; fi
    fi
  done
  [[ -n $best ]] || die "no Java $min+ found for Elasticsearch $ES_VERSION (set SW_ES_JAVA_HOME)"
  dirname "$(dirname "$best")"
}

# ---------------------------------------------------------------- install

install_kafka() {
  local stamp=$KAFKA_DIR/libs/.stackwatch-kafka-$KAFKA_VERSION
  [[ -f $stamp ]] && return 0
  local t0; t0=$(now_ms)
  log "installing kafka $KAFKA_VERSION (broker classpath from Maven Central)"
  mkdir -p "$KAFKA_DIR"
  rm -rf "$KAFKA_DIR/libs.tmp"
  mvn_run install-kafka.log dependency:copy-dependencies -Dkafka.version="$KAFKA_VERSION" \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_DIR/libs.tmp"
  [[ -f "$KAFKA_DIR/libs.tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] ||
    die "kafka_2.13-$KAFKA_VERSION.jar missing after maven (see $LOG_DIR/install-kafka.log)"
  touch "$KAFKA_DIR/libs.tmp/.stackwatch-kafka-$KAFKA_VERSION"
  rm -rf "$KAFKA_DIR/libs"
  mv "$KAFKA_DIR/libs.tmp" "$KAFKA_DIR/libs"
  log "kafka $KAFKA_VERSION installed in $(since "$t0") ($(du -sh "$KAFKA_DIR/libs" | cut -f1))"
}

# Elasticsearch runs as $ES_USER, which must traverse every parent directory. When
# $STACKWATCH_HOME sits below a private directory (e.g. /root or a 0750 home), keep
# Elasticsearch in /var/lib/stackwatch/<hash>/ instead, with a symlink
# $STACKWATCH_HOME/elasticsearch pointing there. SW_ES_DIR overrides the location.
resolve_es_base() {
  local link=$STACKWATCH_HOME/elasticsearch target="" d
  if [[ -n ${SW_ES_DIR:-} ]]; then
    target=$SW_ES_DIR
  elif [[ -L $link ]]; then
    target=$(readlink -f "$link")
  elif (( EUID == 0 )) && [[ ! -e $link ]]; then
    d=$STACKWATCH_HOME
    while [[ ! -e $d ]]; do d=$(dirname "$d"); done
    while [[ $d != / ]]; do
      if [[ $(stat -L -c %A "$d") != ?????????[xt] ]]; then
        target=/var/lib/stackwatch/$(printf '%s' "$STACKWATCH_HOME" | sha1sum | cut -c1-12)/elasticsearch
        [[ ${1:-} != quiet ]] || break
        log "$d is not traversable by $ES_USER: Elasticsearch goes to $target (symlinked from $link)"
        break
      fi
      d=$(dirname "$d")
    done
  fi
  if [[ -n $target ]]; then
    ES_BASE=$target
    ES_HOME=$ES_BASE/elasticsearch-$ES_VERSION
    ESS_BASE=$ES_BASE/secure
    ESS_HOME=$ESS_BASE/elasticsearch-$ES_VERSION
  fi
}
es_prepare_base() { # create ES_BASE (and the symlink to it if it lives elsewhere)
  local link=$STACKWATCH_HOME/elasticsearch
  mkdir -p "$ES_BASE"
  if [[ $ES_BASE != "$link" && -z ${SW_ES_DIR:-} && ! -e $link ]]; then
    chmod 755 "$(dirname "$(dirname "$ES_BASE")")" "$(dirname "$ES_BASE")"
    ln -s "$ES_BASE" "$link"
  fi
}

es_ensure_user() {
  (( EUID == 0 )) || return 0
  if ! id -u "$ES_USER" >/dev/null 2>&1; then
    log "creating system user $ES_USER (Elasticsearch refuses to run as root)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$ES_USER"
  fi
  mkdir -p "$ES_BASE/data" "$ES_BASE/logs" "$ES_BASE/tmp" "$ES_BASE/run"
  chown -R "$ES_USER:" "$ES_BASE"
  if ! runuser -u "$ES_USER" -- test -x "$ES_HOME/bin/elasticsearch" -a -w "$ES_BASE/data"; then
    die "user $ES_USER cannot reach $ES_HOME (a parent directory is not world-executable?);" \
      "set STACKWATCH_HOME to a directory it can traverse, e.g. /var/tmp/stackwatch"
  fi
}

install_elasticsearch() {
  local stamp=$ES_HOME/.stackwatch-installed
  es_prepare_base
  if [[ ! -f $stamp ]]; then
    local t0; t0=$(now_ms)
    log "installing elasticsearch $ES_VERSION ($ES_ARTIFACT from Maven Central)"
    need_cmd unzip unzip
    rm -rf "$ES_BASE/download" "$ES_BASE/unpack.tmp" "$ES_HOME"
    mvn_run install-elasticsearch.log dependency:copy -Dartifact="$ES_ARTIFACT" \
      -DoutputDirectory="$ES_BASE/download"
    mkdir -p "$ES_BASE/unpack.tmp"
    unzip -q "$ES_BASE/download/elasticsearch-$ES_VERSION.zip" -d "$ES_BASE/unpack.tmp"
    mv "$ES_BASE/unpack.tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
    rm -rf "$ES_BASE/download" "$ES_BASE/unpack.tmp" # the zip stays in ~/.m2
    touch "$stamp"
    log "elasticsearch $ES_VERSION installed in $(since "$t0"); modules: $(cd "$ES_HOME/modules" && echo *)"
  fi
  es_ensure_user
}

# The secure services' TLS material in $TLS_DIR (openssl, made once: a CA of our own, and one certificate for
# 127.0.0.1 and localhost that elasticsearch-secure (HTTP and transport) and kafka-secure serve), and their random
# passwords (elastic.password, kafka.password).
tls_secrets() {
  local d=$TLS_DIR f
  mkdir -p "$d"
  chmod 700 "$d"
  for f in elastic kafka; do
    if [[ ! -s $d/$f.password ]]; then
      (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$d/$f.password.tmp")
      mv "$d/$f.password.tmp" "$d/$f.password"
    fi
  done
  [[ -s $d/ca.crt && -s $d/server.crt && -s $d/server.key ]] && return 0
  need_cmd openssl openssl
  log "making a test CA and a certificate for 127.0.0.1/localhost in $d (openssl)"
  rm -f "$d"/ca.* "$d"/server.*
  (
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=stackwatch test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$d/ca.key" -out "$d/ca.crt"
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" >"$d/server.ext"
    openssl x509 -req -sha256 -days 3650 -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -extfile "$d/server.ext" -out "$d/server.crt"
  ) >"$LOG_DIR/tls-openssl.log" 2>&1 || {
    show_log_tail "$LOG_DIR/tls-openssl.log"
    die "openssl failed to make the test certificates"
  }
  rm -f "$d/server.csr" "$d/server.ext" "$d/ca.srl"
  chmod 644 "$d/ca.crt" "$d/server.crt" # the CA certificate is public; the keys and the passwords stay 0600
}

# The secure node's own copy of the distribution (hard links: no space, instant), with the
# stackwatch-security-analysis plugin the .security index needs (see $ESS_PLUGIN_SRC/README.md), compiled here
# against the distribution's own jars.
ess_home() {
  local stamp=$ESS_HOME/.stackwatch-secure-home want
  want=$(cat "$ESS_PLUGIN_SRC"/plugin-descriptor.properties.in "$ESS_PLUGIN_SRC"/src/dev/stackwatch/esshim/*.java |
    sha256sum | cut -c1-16)
  [[ -f $stamp && $(<"$stamp") == "$want" ]] && return 0
  local t0; t0=$(now_ms)
  need_cmd javac openjdk-17-jdk-headless
  rm -rf "$ESS_HOME" "$ESS_BASE/plugin.tmp"
  mkdir -p "$ESS_BASE"
  cp -al "$ES_HOME" "$ESS_HOME" 2>/dev/null || cp -a "$ES_HOME" "$ESS_HOME"
  rm -rf "$ESS_HOME/config" "$ESS_HOME/.stackwatch-installed" # its config is $ESS_BASE/config (ES_PATH_CONF)
  local build=$ESS_BASE/plugin.tmp dest=$ESS_HOME/plugins/stackwatch-security-analysis
  mkdir -p "$build/classes" "$dest"
  if ! { javac --release 17 -nowarn -cp "$ES_HOME/lib/*" -d "$build/classes" \
      "$ESS_PLUGIN_SRC"/src/dev/stackwatch/esshim/*.java &&
    jar --create --file "$dest/stackwatch-security-analysis-$ES_VERSION.jar" -C "$build/classes" .; } \
    >"$LOG_DIR/elasticsearch-secure-plugin.log" 2>&1; then
    show_log_tail "$LOG_DIR/elasticsearch-secure-plugin.log"
    die "building the stackwatch-security-analysis plugin failed"
  fi
  sed "s/@ES_VERSION@/$ES_VERSION/g" "$ESS_PLUGIN_SRC/plugin-descriptor.properties.in" >"$dest/plugin-descriptor.properties"
  rm -rf "$build"
  echo "$want" >"$stamp"
  log "elasticsearch-secure: distribution linked and plugin built in $(since "$t0") ($ESS_HOME)"
}

install_elasticsearch_secure() {
  install_elasticsearch
  tls_secrets
  ess_home
  local conf=$ESS_BASE/config stamp=$ESS_BASE/config/.stackwatch-secure
  local pw; pw=$(<"$TLS_DIR/elastic.password")
  # Remade when the password or the certificate changed (e.g. $TLS_DIR was deleted).
  local want; want=$(cat "$TLS_DIR/elastic.password" "$TLS_DIR/server.crt" | sha256sum | cut -c1-16)
  if [[ ! -f $stamp || $(<"$stamp") != "$want" ]]; then
    local t0; t0=$(now_ms)
    rm -rf "$conf" "$ESS_BASE/data" # a new bootstrap password needs a fresh .security index
    mkdir -p "$conf/tls" "$ESS_BASE/data" "$ESS_BASE/logs" "$ESS_BASE/tmp" "$ESS_BASE/run"
    local f
    for f in jvm.options jvm.options.d log4j2.properties roles.yml role_mapping.yml users users_roles; do
      cp -a "$ES_HOME/config/$f" "$conf/"
    done
    cp "$TLS_DIR/ca.crt" "$TLS_DIR/server.crt" "$TLS_DIR/server.key" "$conf/tls/"
    local ks=(env ES_JAVA_HOME="$(es_java_home)" ES_PATH_CONF="$conf" "$ESS_HOME/bin/elasticsearch-keystore")
    if ! { "${ks[@]}" create && printf '%s' "$pw" | "${ks[@]}" add -x -f bootstrap.password; } \
      >"$LOG_DIR/elasticsearch-secure-keystore.log" 2>&1; then
      show_log_tail "$LOG_DIR/elasticsearch-secure-keystore.log"
      die "elasticsearch-keystore failed (log: $LOG_DIR/elasticsearch-secure-keystore.log)"
    fi
    echo "$want" >"$stamp"
    log "elasticsearch-secure configured in $(since "$t0") ($conf)"
  fi
  if (( EUID == 0 )); then chown -R "$ES_USER:" "$ESS_BASE"; fi
}

install_alertmanager() {
  [[ -x $AM_BIN ]] && return 0
  local t0; t0=$(now_ms)
  [[ $AM_BIN == /usr/bin/prometheus-alertmanager ]] || die "$AM_BIN not found (SW_ALERTMANAGER_BIN)"
  apt_install apt.log prometheus-alertmanager
  [[ -x $AM_BIN ]] || die "prometheus-alertmanager installed but $AM_BIN is missing"
  log "alertmanager installed in $(since "$t0") ($("$AM_BIN" --version 2>&1 | head -n1))"
}

install_webhook() {
  command -v node >/dev/null 2>&1 || die "node (20+) not found on PATH"
  local major; major=$(node -p 'process.versions.node.split(".")[0]')
  (( major >= 20 )) || die "node $major found, the webhook receiver needs node 20+"
  [[ -f $WEBHOOK_SCRIPT ]] || die "$WEBHOOK_SCRIPT missing"
}

install_rabbitmq() {
  [[ -x $RABBITMQ_BIN/rabbitmq-server ]] && return 0
  local t0; t0=$(now_ms)
  apt_install apt.log rabbitmq-server
  [[ -x $RABBITMQ_BIN/rabbitmq-server ]] || die "rabbitmq-server installed but $RABBITMQ_BIN/rabbitmq-server is missing"
  log "rabbitmq installed in $(since "$t0")"
}

install_kafka_secure() {
  install_kafka
  tls_secrets
}

# ---------------------------------------------------------------- launch

# The settings a single-node broker needs (every internal topic with one replica), for both brokers.
kafka_single_node_properties() { # DATA_DIR
  cat <<EOF
log.dirs=$1
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
EOF
}

launch_kafka() {
  local data=$KAFKA_DIR/data props=$KAFKA_DIR/server.properties cid
  local cp="$KAFKA_DIR/libs/*"
  mkdir -p "$data"
  if [[ ! -s $KAFKA_DIR/cluster-id ]]; then
    # 16 random bytes, base64url without padding (Kafka's Uuid form); not starting with '-'
    while :; do
      cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
      [[ $cid != -* ]] && break
    done
    echo "$cid" >"$KAFKA_DIR/cluster-id"
  fi
  cid=$(<"$KAFKA_DIR/cluster-id")
  cp "$HELPERS/kafka-log4j2.properties" "$KAFKA_DIR/log4j2.properties"
  cat >"$props" <<EOF
# generated by scripts/stack.sh: single combined KRaft node for local tests
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
$(kafka_single_node_properties "$data")
EOF
  local java_opts=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties")
  if [[ ! -f $data/meta.properties ]]; then
    log "formatting kafka storage (cluster id $cid)"
    if ! java "${java_opts[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$cid" -c "$props" \
      --ignore-formatted >"$LOG_DIR/kafka-format.log" 2>&1; then
      show_log_tail "$LOG_DIR/kafka-format.log"
      die "kafka storage format failed"
    fi
  fi
  launch "$LOG_DIR/kafka.log" java "${java_opts[@]}" -cp "$cp" kafka.Kafka "$props"
}

# es_launch SVC PIDFILE CMD...: the launcher (CLI) forks the server JVM, which writes -p's pid file early on;
# the server's PID becomes the service PID (stopping it stops the launcher too), the launcher's is kept beside it.
es_launch() {
  local svc=$1 espid=$2 launcher; shift 2
  launch "$LOG_DIR/$svc.log" "$@"
  launcher=$LAUNCHED_PID
  echo "$launcher" >"$RUN_DIR/$svc-launcher.pid"
  local deadline=$(( $(now_ms) + 60000 )) pid=""
  while (( $(now_ms) < deadline )) && is_running "$launcher"; do
    if [[ -s $espid ]]; then pid=$(tr -dc '0-9' <"$espid"); [[ -n $pid ]] && break; fi
    sleep 0.2
  done
  LAUNCHED_PID=${pid:-$launcher} # (written to $svc.pid by the library)
}

launch_elasticsearch() {
  local java_home; java_home=$(es_java_home)
  cat >"$ES_HOME/config/elasticsearch.yml" <<EOF
# generated by scripts/stack.sh (the integ-test-zip is minimal: unknown settings are fatal)
cluster.name: stackwatch
node.name: stackwatch-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
path.data: $ES_BASE/data
path.logs: $ES_BASE/logs
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  local espid=$ES_BASE/run/elasticsearch.pid
  rm -f "$espid"
  local cmd=(env ES_JAVA_HOME="$java_home" ES_JAVA_OPTS="${SW_ES_JAVA_OPTS:--Xms512m -Xmx512m}"
    ES_TMPDIR="$ES_BASE/tmp" "$ES_HOME/bin/elasticsearch" -p "$espid")
  if (( EUID == 0 )); then
    chown -R "$ES_USER:" "$ES_HOME/config" "$ES_BASE/data" "$ES_BASE/logs" "$ES_BASE/tmp" "$ES_BASE/run"
    cmd=(runuser -u "$ES_USER" -- "${cmd[@]}")
  fi
  es_launch elasticsearch "$espid" "${cmd[@]}"
}

launch_kafka_secure() {
  local data=$KS_DIR/data props=$KS_DIR/server.properties cid pw
  local cp="$KAFKA_DIR/libs/*"
  pw=$(<"$TLS_DIR/kafka.password")
  mkdir -p "$data"
  chmod 700 "$KS_DIR"
  # The broker's key and certificate chain in one PEM file (Kafka's PEM keystore).
  (umask 077; cat "$TLS_DIR/server.key" "$TLS_DIR/server.crt" >"$KS_DIR/server-keystore.pem")
  if [[ ! -s $KS_DIR/cluster-id ]]; then
    while :; do
      cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
      [[ $cid != -* ]] && break
    done
    echo "$cid" >"$KS_DIR/cluster-id"
  fi
  cid=$(<"$KS_DIR/cluster-id")
  cp "$HELPERS/kafka-log4j2.properties" "$KS_DIR/log4j2.properties"
  local jaas_plain="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$KS_USER\" password=\"$pw\" user_$KS_USER=\"$pw\";"
  local jaas_scram="org.apache.kafka.common.security.scram.ScramLoginModule required;"
  (umask 077; cat >"$props" <<EOF
# generated by scripts/stack.sh: kafka-secure, a single combined KRaft node with SASL (PLAIN, SCRAM-SHA-256,
# SCRAM-SHA-512) over TLS (SASL_SSL) and over plain TCP (SASL_PLAINTEXT), for the security tests
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_SECURE_CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PLAINTEXT_PORT,CONTROLLER://127.0.0.1:$KAFKA_SECURE_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PLAINTEXT_PORT
listener.security.protocol.map=SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=$jaas_plain
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$jaas_scram
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas_scram
listener.name.sasl_plaintext.plain.sasl.jaas.config=$jaas_plain
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$jaas_scram
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$jaas_scram
ssl.keystore.type=PEM
ssl.keystore.location=$KS_DIR/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.crt
ssl.client.auth=none
$(kafka_single_node_properties "$data")
EOF
  )
  local java_opts=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KS_DIR/log4j2.properties")
  if [[ ! -f $data/meta.properties ]]; then
    log "formatting kafka-secure storage (cluster id $cid; SCRAM credentials for $KS_USER)"
    if ! java "${java_opts[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$cid" -c "$props" --ignore-formatted \
      --add-scram "SCRAM-SHA-256=[name=$KS_USER,password=$pw]" --add-scram "SCRAM-SHA-512=[name=$KS_USER,password=$pw]" \
      >"$LOG_DIR/kafka-secure-format.log" 2>&1; then
      show_log_tail "$LOG_DIR/kafka-secure-format.log"
      die "kafka-secure storage format failed"
    fi
  fi
  launch "$LOG_DIR/kafka-secure.log" java "${java_opts[@]}" -cp "$cp" kafka.Kafka "$props"
}

launch_elasticsearch_secure() {
  local java_home; java_home=$(es_java_home)
  cat >"$ESS_BASE/config/elasticsearch.yml" <<EOF
# generated by scripts/stack.sh: the secure node (the integ-test-zip is minimal: unknown settings are fatal)
cluster.name: stackwatch-secure
node.name: stackwatch-secure-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_SECURE_PORT
transport.port: $ES_SECURE_TRANSPORT_PORT
path.data: $ESS_BASE/data
path.logs: $ESS_BASE/logs
cluster.routing.allocation.disk.threshold_enabled: false
xpack.security.enabled: true
# Single-node discovery needs no transport TLS (no other node joins; the bootstrap check only warns), but it
# is on, with the same certificate, so that this node is configured like a production one.
xpack.security.transport.ssl.enabled: true
xpack.security.transport.ssl.verification_mode: certificate
xpack.security.transport.ssl.certificate: tls/server.crt
xpack.security.transport.ssl.key: tls/server.key
xpack.security.transport.ssl.certificate_authorities: [ tls/ca.crt ]
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.certificate: tls/server.crt
xpack.security.http.ssl.key: tls/server.key
xpack.security.http.ssl.certificate_authorities: [ tls/ca.crt ]
xpack.security.authc.api_key.enabled: true
EOF
  local espid=$ESS_BASE/run/elasticsearch.pid
  rm -f "$espid"
  local cmd=(env ES_JAVA_HOME="$java_home" ES_JAVA_OPTS="${SW_ES_JAVA_OPTS:--Xms512m -Xmx512m}"
    ES_PATH_CONF="$ESS_BASE/config" ES_TMPDIR="$ESS_BASE/tmp" "$ESS_HOME/bin/elasticsearch" -p "$espid")
  if (( EUID == 0 )); then
    chown -R "$ES_USER:" "$ESS_BASE"
    cmd=(runuser -u "$ES_USER" -- "${cmd[@]}")
  fi
  es_launch elasticsearch-secure "$espid" "${cmd[@]}"
}

launch_alertmanager() {
  mkdir -p "$AM_DIR/data"
  sed "s#@WEBHOOK_URL@#http://127.0.0.1:$WEBHOOK_PORT/alertmanager#" \
    "$HELPERS/alertmanager.yml.tmpl" >"$AM_DIR/alertmanager.yml"
  launch "$LOG_DIR/alertmanager.log" "$AM_BIN" \
    --config.file="$AM_DIR/alertmanager.yml" \
    --storage.path="$AM_DIR/data" \
    --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address=
}

# The environment of our RabbitMQ node, for rabbitmq-server: its own files only; an empty rabbitmq-env.conf instead
# of /etc/rabbitmq's. rabbitmqctl needs only its node name and the HOME that holds the Erlang cookie, which
# `scripts/stack.sh env` gives the tests (STACKWATCH_RABBITMQ_NODE, _HOME, _CTL).
rabbitmq_env() {
  printf '%s\n' "HOME=$RABBITMQ_DIR/home" "RABBITMQ_CONF_ENV_FILE=$RABBITMQ_DIR/rabbitmq-env.conf" \
    "RABBITMQ_NODENAME=$RABBITMQ_NODE" "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1" "RABBITMQ_NODE_PORT=$RABBITMQ_PORT" \
    "RABBITMQ_DIST_PORT=$RABBITMQ_DIST_PORT" "RABBITMQ_CONFIG_FILE=$RABBITMQ_DIR/rabbitmq.conf" \
    "RABBITMQ_ENABLED_PLUGINS_FILE=$RABBITMQ_DIR/enabled_plugins" "RABBITMQ_MNESIA_BASE=$RABBITMQ_DIR/mnesia" \
    "RABBITMQ_LOG_BASE=$RABBITMQ_DIR/log" "RABBITMQ_LOGS=-" "ERL_EPMD_ADDRESS=127.0.0.1" \
    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
}

# In the foreground (its log is our log file): rabbitmq-server is a shell script that starts erl and stops it
# gracefully on SIGTERM. No plugins; AMQP on loopback only; guest/guest, which RabbitMQ allows from loopback.
launch_rabbitmq() {
  local env
  mkdir -p "$RABBITMQ_DIR/home" "$RABBITMQ_DIR/mnesia" "$RABBITMQ_DIR/log"
  echo '[].' >"$RABBITMQ_DIR/enabled_plugins"
  echo "listeners.tcp.local = 127.0.0.1:$RABBITMQ_PORT" >"$RABBITMQ_DIR/rabbitmq.conf"
  : >"$RABBITMQ_DIR/rabbitmq-env.conf"
  mapfile -t env < <(rabbitmq_env)
  launch "$LOG_DIR/rabbitmq.log" env "${env[@]}" "$RABBITMQ_BIN/rabbitmq-server" -stackwatch_home "$RABBITMQ_DIR"
}

launch_webhook() {
  launch "$LOG_DIR/webhook.log" node "$WEBHOOK_SCRIPT" --port "$WEBHOOK_PORT"
}

# ---------------------------------------------------------------- commands

# Elasticsearch's directory may live elsewhere (see resolve_es_base); install and start say so when they move it.
services_prepare() {
  case $1 in
    install|start) resolve_es_base ;;
    *) resolve_es_base quiet ;;
  esac
}

print_env() {
  cat <<EOF
STACKWATCH_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
STACKWATCH_ES_URL=http://127.0.0.1:$ES_PORT
STACKWATCH_ALERTMANAGER_URL=http://127.0.0.1:$AM_PORT
STACKWATCH_WEBHOOK_URL=http://127.0.0.1:$WEBHOOK_PORT
STACKWATCH_ES_SECURE_URL=https://127.0.0.1:$ES_SECURE_PORT
STACKWATCH_ES_SECURE_CA=$TLS_DIR/ca.crt
STACKWATCH_ES_SECURE_USER=$ESS_USER
STACKWATCH_KAFKA_SECURE_BROKERS=127.0.0.1:$KAFKA_SECURE_PORT
STACKWATCH_KAFKA_SASL_PLAINTEXT_BROKERS=127.0.0.1:$KAFKA_SASL_PLAINTEXT_PORT
STACKWATCH_KAFKA_SECURE_CA=$TLS_DIR/ca.crt
STACKWATCH_KAFKA_SECURE_USER=$KS_USER
STACKWATCH_RABBITMQ_URL=rabbit://guest:guest@127.0.0.1:$RABBITMQ_PORT/
STACKWATCH_RABBITMQ_NODE=$RABBITMQ_NODE
STACKWATCH_RABBITMQ_CTL=$RABBITMQ_BIN/rabbitmqctl
STACKWATCH_RABBITMQ_HOME=$RABBITMQ_DIR/home
EOF
  # Made on the first install or start of elasticsearch-secure or kafka-secure.
  if [[ -s $TLS_DIR/elastic.password ]]; then
    echo "STACKWATCH_ES_SECURE_PASSWORD=$(<"$TLS_DIR/elastic.password")"
  fi
  if [[ -s $TLS_DIR/kafka.password ]]; then
    echo "STACKWATCH_KAFKA_SECURE_PASSWORD=$(<"$TLS_DIR/kafka.password")"
  fi
}

service_main "$@"
