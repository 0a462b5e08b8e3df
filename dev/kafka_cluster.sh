# shellcheck shell=bash
# The cluster half of dev/kafka (sourced by it when --brokers/KAFKA_BROKERS is above 1): N
# combined broker+controller KRaft nodes on loopback. Uses dev/kafka's port, cache, lib, here,
# brokers, node, die, need_tools and fetch_jars; see dev/kafka --help for the commands.

replication=$((brokers < 3 ? brokers : 3))

node_port() { echo $((port + 2 * ($1 - 1))); }
node_cport() { echo $((port + 2 * ($1 - 1) + 1)); }
node_dir() { echo "$cluster_dir/node-$1"; }
all_nodes() { seq 1 "$brokers"; }
bootstrap_list() {
  local n out=()
  for n in $(all_nodes); do out+=("127.0.0.1:$(node_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

node_pid() {
  local pidfile; pidfile="$(node_dir "$1")/kafka.pid"
  [[ -f "$pidfile" ]] || return 1
  local pid; pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  grep -q "kafka.Kafka" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

node_answers() { python3 "$here/kafka_probe.py" 127.0.0.1 "$(node_port "$1")" "${2:-1}" 2>/dev/null; }

write_node_config() {
  local n="$1" dir voters="" m
  dir="$(node_dir "$n")"
  for m in $(all_nodes); do voters+="${voters:+,}$m@127.0.0.1:$(node_cport "$m")"; done
  mkdir -p "$dir"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
listeners=PLAINTEXT://127.0.0.1:$(node_port "$n"),CONTROLLER://127.0.0.1:$(node_cport "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
controller.quorum.voters=$voters
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$replication
min.insync.replicas=2
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=2
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=4194304
log.retention.hours=24
PROPS
  cat > "$dir/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
PROPS
}

node_java() {
  local dir; dir="$(node_dir "$1")"; shift
  java -Xms"${KAFKA_HEAP:-384m}" -Xmx"${KAFKA_HEAP:-384m}" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$lib/*" "$@"
}

# Start node $1 on its data dir (in the background; cluster_wait waits for it).
launch_node() {
  local n="$1" dir; dir="$(node_dir "$n")"
  node_pid "$n" >/dev/null && return 0
  [[ -d "$dir/data" ]] || die "node $n has no data dir (start the cluster first: dev/kafka start --brokers $brokers)"
  setsid java -Xms"${KAFKA_HEAP:-384m}" -Xmx"${KAFKA_HEAP:-384m}" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$lib/*" \
    kafka.Kafka "$dir/server.properties" >> "$dir/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/kafka.pid"
}

# Wait until each node in "$@" answers a metadata request that lists $want brokers.
cluster_wait() {
  local want="$1"; shift
  local deadline=$((SECONDS + ${KAFKA_READY_TIMEOUT:-90})) n
  for n in "$@"; do
    until node_answers "$n" "$want"; do
      if ! node_pid "$n" >/dev/null; then
        tail -n 30 "$(node_dir "$n")/stdout.log" "$(node_dir "$n")/server.log" >&2 2>/dev/null || true
        die "node $n exited during start-up (logs in $(node_dir "$n"))"
      fi
      ((SECONDS < deadline)) || die "node $n did not become ready in time (logs in $(node_dir "$n"))"
      sleep 0.2
    done
  done
}

format_cluster() {
  rm -rf "$cluster_dir"
  mkdir -p "$cluster_dir"
  echo "$brokers" > "$cluster_dir/brokers"
  local uuid n
  uuid="$(python3 "$here/cluster_id.py")"
  for n in $(all_nodes); do
    write_node_config "$n"
    # Static voters (controller.quorum.voters): no --standalone/--initial-controllers.
    node_java "$n" kafka.tools.StorageTool format --cluster-id="$uuid" -c "$(node_dir "$n")/server.properties" \
      > "$(node_dir "$n")/format.log" 2>&1 \
      || { cat "$(node_dir "$n")/format.log" >&2; die "formatting node $n's data dir failed"; }
  done
}

# Stop the nodes in "$@" with $1 = TERM or KILL; all at once, then wait for each to exit.
signal_nodes() {
  local sig="$1"; shift
  local n pid pids=()
  for n in "$@"; do
    if pid="$(node_pid "$n")"; then kill -"$sig" "$pid"; pids+=("$n:$pid"); fi
  done
  local entry deadline=$((SECONDS + 30))
  for entry in "${pids[@]}"; do
    pid="${entry#*:}"
    while kill -0 "$pid" 2>/dev/null; do
      # A controlled shutdown waits for a controller quorum; without one it would hang.
      if ((SECONDS >= deadline)); then kill -KILL "$pid"; fi
      sleep 0.1
    done
    rm -f "$(node_dir "${entry%%:*}")/kafka.pid"
  done
  ((${#pids[@]})) || echo "dev/kafka: not running" >&2
  return 0
}

cluster_start() {
  need_tools
  fetch_jars
  if [[ -n "$node" ]]; then
    launch_node "$node"
    # Up when it answers and lists itself among the live brokers.
    cluster_wait 1 "$node"
    echo "127.0.0.1:$(node_port "$node")"
    return 0
  fi
  local n up=0
  for n in $(all_nodes); do node_pid "$n" >/dev/null && up=$((up + 1)); done
  local recorded=""; [[ -f "$cluster_dir/brokers" ]] && recorded="$(cat "$cluster_dir/brokers")"
  if ((up == 0)) && [[ "${1:-}" != keep || "$recorded" != "$brokers" ]]; then
    format_cluster
  elif [[ "$recorded" != "$brokers" ]]; then
    die "a $recorded-node cluster runs on port $port (dev/kafka stop first)"
  fi
  for n in $(all_nodes); do launch_node "$n"; done
  # shellcheck disable=SC2046
  cluster_wait "$brokers" $(all_nodes)
  bootstrap_list
}

cluster_status() {
  local n bad=0 nodes
  nodes="${node:-$(all_nodes)}"
  for n in $nodes; do
    if pid="$(node_pid "$n")" && node_answers "$n"; then
      echo "node $n up: 127.0.0.1:$(node_port "$n") (pid $pid)"
    else
      echo "node $n down"; bad=1
    fi
  done
  [[ -n "$node" ]] || echo "bootstrap: $(bootstrap_list)"
  return "$bad"
}

cluster_main() {
  local nodes
  nodes="${node:-$(all_nodes)}"
  case "$1" in
    start) cluster_start ;;
    # shellcheck disable=SC2086
    stop) signal_nodes TERM $nodes; echo "dev/kafka: stopped${node:+ node $node}" >&2 ;;
    # shellcheck disable=SC2086
    kill) signal_nodes KILL $nodes; echo "dev/kafka: killed${node:+ node $node}" >&2 ;;
    # shellcheck disable=SC2086
    restart) signal_nodes TERM $nodes; cluster_start keep ;;
    status) cluster_status ;;
    *) echo "usage: dev/kafka start|stop|restart|status|kill [--brokers N] [--node N] (dev/kafka --help)" >&2; return 2 ;;
  esac
}
