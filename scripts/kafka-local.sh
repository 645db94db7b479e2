#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, broker+controller in one JVM), no Docker.
#
#   scripts/kafka-local.sh start    start (idempotent), wait until ready, print 127.0.0.1:<port>
#   scripts/kafka-local.sh stop     stop the broker by its PID (exit 0 if not running)
#   scripts/kafka-local.sh status   "running 127.0.0.1:<port> pid <pid>" (exit 0) or "stopped" (exit 3)
#
# Environment:
#   KAFKA_LOCAL_DIR              state folder (default <repo root>/.kafka)
#   KAFKA_LOCAL_PORT             client port (default 9092), listens on 127.0.0.1 only; the
#                                worker, loader and demo use the same variable to find the
#                                broker when KAFKA_BROKER is not set
#   KAFKA_LOCAL_CONTROLLER_PORT  KRaft controller port (default port + 1)
#   KAFKA_LOCAL_TIMEOUT          seconds to wait for readiness (default 90)
#   KAFKA_LOCAL_FRESH=1          on start: wipe this port's data and log folders first
#   KAFKA_LOCAL_HEAP             JVM heap options (default "-Xmx512m -Xms256m")
#
# Layout under the state folder:
#   jars/               broker jars, fetched once with Maven (scripts/kafka/pom.xml)
#   jars/.complete      marker written after a successful fetch
#   data-<port>/        log.dirs of the broker on <port>
#   logs-<port>/        server.log (+ stdout.log), server.properties
#   kafka-<port>.pid    PID of the broker on <port>
#   kafka-<port>.lock   flock serialising start/stop for <port>
#
# Only the bootstrap address goes to stdout; every other message goes to stderr.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
KAFKA_CONF_DIR="$SCRIPT_DIR/kafka"

DIR="${KAFKA_LOCAL_DIR:-$REPO_ROOT/.kafka}"
PORT="${KAFKA_LOCAL_PORT:-9092}"
CPORT="${KAFKA_LOCAL_CONTROLLER_PORT:-$((PORT + 1))}"
TIMEOUT="${KAFKA_LOCAL_TIMEOUT:-90}"
HEAP="${KAFKA_LOCAL_HEAP:--Xmx512m -Xms256m}"
HOST=127.0.0.1
# Fixed cluster id (22-char base64 UUID): the data folder is per port and local only.
CLUSTER_ID="${KAFKA_LOCAL_CLUSTER_ID:-c3RyZWFtYXBwLWthZmthMQ}"

JAR_DIR="$DIR/jars"
JAR_MARKER="$JAR_DIR/.complete"
DATA_DIR="$DIR/data-$PORT"
LOG_DIR="$DIR/logs-$PORT"
PID_FILE="$DIR/kafka-$PORT.pid"
PROPS="$LOG_DIR/server.properties"
SERVER_LOG="$LOG_DIR/server.log"
STDOUT_LOG="$LOG_DIR/stdout.log"
READY_LINE="Kafka Server started"

log() { echo "kafka-local: $*" >&2; }
die() { log "$*"; exit 1; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# True if the process exists and is not a zombie (the broker is a child of this
# script while `start` waits, so an exited broker stays a zombie until the script ends).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"
    [[ "${stat:0:1}" != "Z" ]]
}

# PID recorded in the pid file, if that process is alive (and looks like our JVM).
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] || return 1
    alive "$pid" || return 1
    # Guard against PID reuse: the process must be a java running kafka.Kafka.
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || return 1
    fi
    echo "$pid"
}

# Ports of the other brokers this script started (under the same state folder) that still
# run: "not running" alone left users with a broker on another port they had forgotten.
other_ports() {
    local f port pid
    for f in "$DIR"/kafka-*.pid; do
        [[ -f "$f" ]] || continue
        port="${f##*/kafka-}"
        port="${port%.pid}"
        [[ "$port" != "$PORT" ]] || continue
        pid="$(tr -dc '0-9' <"$f")"
        [[ -n "$pid" ]] && alive "$pid" || continue
        if [[ -r "/proc/$pid/cmdline" ]]; then
            tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || continue
        fi
        echo "$port"
    done
}

hint_other_brokers() {
    local port
    for port in $(other_ports); do
        log "a broker started by this script runs on $HOST:$port: stop it with" \
            "KAFKA_LOCAL_PORT=$port $0 stop"
    done
}

port_open() {
    # bash /dev/tcp in a subshell so the descriptor is closed right away
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

fetch_jars() {
    if [[ -f "$JAR_MARKER" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH (needed once to fetch the Kafka jars)"
    log "fetching Kafka jars into $JAR_DIR with Maven (first run only) ..."
    rm -rf "$JAR_DIR"
    mkdir -p "$JAR_DIR"
    local mvn_log="$DIR/maven-fetch.log"
    if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_CONF_DIR/pom.xml" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$JAR_DIR" >"$mvn_log" 2>&1; then
        tail -n 40 "$mvn_log" >&2 || true
        rm -rf "$JAR_DIR"
        die "Maven could not fetch the Kafka jars (full output: $mvn_log)"
    fi
    ls "$JAR_DIR"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$JAR_DIR"; die "kafka_2.13 jar missing after fetch"; }
    date -u +%FT%TZ >"$JAR_MARKER"
}

write_properties() {
    mkdir -p "$LOG_DIR" "$DATA_DIR"
    cat >"$PROPS" <<EOF
# Generated by scripts/kafka-local.sh: single-node KRaft broker for local use and tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CPORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

num.partitions=8
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true

offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

group.initial.rebalance.delay.ms=0
# After a crash (kill -9) the new incarnation cannot register until the old broker
# session expires (default 9 s); a short session makes restarts quick.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
# The cleaner compacting changelog topics otherwise reserves 128 MiB (min 1 MiB per thread).
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=4
EOF
}

stop_pid() {
    local pid="$1" waited=0
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid"; do
        if ((waited >= 300)); then
            log "broker pid $pid did not stop after 30 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

cmd_start() {
    local pid
    if pid="$(running_pid)" && port_open "$PORT"; then
        log "already running (pid $pid)"
        echo "$HOST:$PORT"
        return 0
    fi
    if [[ -n "${pid:-}" ]]; then
        # alive but not answering: a start still in progress, or a wedged broker
        log "pid $pid is alive but port $PORT does not answer yet; waiting for it"
        if wait_ready "$pid"; then
            echo "$HOST:$PORT"
            return 0
        fi
        log "stopping unresponsive broker pid $pid"
        stop_pid "$pid"
        rm -f "$PID_FILE"
    fi
    rm -f "$PID_FILE"

    if port_open "$PORT"; then
        die "port $HOST:$PORT is already in use by another process"
    fi
    if port_open "$CPORT"; then
        die "controller port $HOST:$CPORT is already in use by another process"
    fi
    command -v java >/dev/null 2>&1 || die "java not found on PATH (Kafka 4 needs Java 17+)"

    fetch_jars

    if [[ "${KAFKA_LOCAL_FRESH:-0}" == "1" ]]; then
        log "KAFKA_LOCAL_FRESH=1: wiping $DATA_DIR and $LOG_DIR"
        rm -rf "$DATA_DIR" "$LOG_DIR"
    fi
    write_properties

    local -a jvm_log=(
        "-Dlog4j2.configurationFile=$KAFKA_CONF_DIR/log4j2.xml"
        "-Dkafka.logs.dir=$LOG_DIR"
    )
    # The format step runs on every start (--ignore-formatted keeps existing data); it is only
    # announced when it writes something: a data folder without meta.properties is new.
    if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
        log "formatting storage in $DATA_DIR (cluster id $CLUSTER_ID)"
    fi
    if ! java -Xmx256m -cp "$JAR_DIR/*" "${jvm_log[@]}" \
        kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$PROPS" --ignore-formatted \
        >"$LOG_DIR/format.log" 2>&1; then
        cat "$LOG_DIR/format.log" >&2
        die "storage format failed (try KAFKA_LOCAL_FRESH=1 to start from empty data)"
    fi

    # Fresh readiness detection: the ready line is only searched in this run's log.
    : >"$SERVER_LOG"
    log "starting broker on $HOST:$PORT (controller $HOST:$CPORT), log $SERVER_LOG"
    # shellcheck disable=SC2086  # HEAP is a list of JVM options
    setsid nohup java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        "${jvm_log[@]}" -cp "$JAR_DIR/*" kafka.Kafka "$PROPS" \
        >"$STDOUT_LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"

    if wait_ready "$pid"; then
        log "broker ready (pid $pid)"
        echo "$HOST:$PORT"
        return 0
    fi

    {
        echo "kafka-local: broker did not become ready (timeout ${TIMEOUT}s); last lines of $SERVER_LOG:"
        tail -n 30 "$SERVER_LOG" 2>/dev/null || true
        if [[ -s "$STDOUT_LOG" ]]; then
            echo "kafka-local: last lines of $STDOUT_LOG:"
            tail -n 30 "$STDOUT_LOG"
        fi
    } >&2
    stop_pid "$pid"
    rm -f "$PID_FILE"
    exit 1
}

# Wait until the log has the ready line and the client port accepts connections.
wait_ready() {
    local pid="$1"
    local deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! alive "$pid"; then
            log "broker pid $pid exited during startup"
            return 1
        fi
        if grep -q "$READY_LINE" "$SERVER_LOG" 2>/dev/null && port_open "$PORT"; then
            return 0
        fi
        sleep 0.25
    done
    return 1
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        log "not running on $HOST:$PORT (KAFKA_LOCAL_PORT=$PORT)"
        hint_other_brokers
        return 0
    fi
    log "stopping broker pid $pid"
    stop_pid "$pid"
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running $HOST:$PORT pid $pid"
        return 0
    fi
    echo "stopped"
    hint_other_brokers
    return 3
}

# Serialise start/stop for one port (e.g. parallel test sessions). The lock is held on
# fd 9 by this script only: children that outlive it are started with 9>&- .
lock() {
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"$DIR/kafka-$PORT.lock"
    flock -w "$((TIMEOUT + 60))" 9 || die "timed out waiting for $DIR/kafka-$PORT.lock"
}

main() {
    is_uint "$PORT" || die "KAFKA_LOCAL_PORT must be a number, got '$PORT'"
    is_uint "$CPORT" || die "KAFKA_LOCAL_CONTROLLER_PORT must be a number, got '$CPORT'"
    is_uint "$TIMEOUT" || die "KAFKA_LOCAL_TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"
    mkdir -p "$DIR"
    case "${1:-}" in
        start)
            lock
            cmd_start
            ;;
        stop)
            lock
            cmd_stop
            ;;
        status) cmd_status ;;
        *)
            echo "usage: $0 start|stop|status" >&2
            exit 2
            ;;
    esac
}

main "$@"
