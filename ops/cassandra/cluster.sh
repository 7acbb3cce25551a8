#!/usr/bin/env bash
# A throw-away Apache Cassandra 5.0 cluster on loopback for the tests of the
# ScyllaDB backend (same CQL, Paxos lightweight transactions, TTLs and
# NetworkTopologyStrategy).
#
#   ops/cassandra/cluster.sh start [1|2]  one node (seoul, 127.0.0.2) or two
#                                         data centers (seoul 127.0.0.2,
#                                         virginia 127.0.0.3); waits for CQL
#   ops/cassandra/cluster.sh env          the SCYLLA_URI and SCYLLA_REPLICATION
#                                         of the running cluster (eval it)
#   ops/cassandra/cluster.sh stop         stops the nodes, removes their data
#
# The server's jars come from Maven Central (pom.xml); java 17 from PATH or
# JAVA_HOME. State lives in $CASSANDRA_DIR (default target/cassandra).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${CASSANDRA_DIR:-$root/target/cassandra}"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
wait_s="${CASSANDRA_WAIT_S:-240}"
# name address dc
nodes_of() {
  echo "seoul 127.0.0.2 seoul"
  [ "$1" -ge 2 ] && echo "virginia 127.0.0.3 virginia"
  return 0
}

jars() {
  if [ ! -f "$dir/lib/.complete" ]; then
    echo "cassandra: resolving the server's jars from Maven Central" >&2
    rm -rf "$dir/lib"
    mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$dir/lib" >&2
    touch "$dir/lib/.complete"
  fi
}

start_node() { # name address dc seeds
  local name=$1 address=$2 dc=$3 seeds=$4 home="$dir/$1"
  rm -rf "$home"
  mkdir -p "$home/conf" "$home/logs"
  sed -e "s|@SEEDS@|$seeds|" -e "s|@ADDRESS@|$address|g" -e "s|@DIR@|$home|g" \
    "$here/cassandra.yaml" >"$home/conf/cassandra.yaml"
  printf 'dc=%s\nrack=rack1\nprefer_local=true\n' "$dc" >"$home/conf/cassandra-rackdc.properties"
  cp "$here/logback.xml" "$home/conf/logback.xml"
  local opts
  opts=$(grep -v '^\s*#' "$here/jvm17.options" | grep -v '^\s*$')
  # shellcheck disable=SC2086 # one option per line
  setsid "$java" $opts \
    -javaagent:"$(ls "$dir"/lib/jamm-*.jar | head -1)" \
    -Dcassandra.config="file://$home/conf/cassandra.yaml" \
    -Dcassandra-rackdc.properties="file://$home/conf/cassandra-rackdc.properties" \
    -Dlogback.configurationFile="$home/conf/logback.xml" \
    -Dcassandra.logdir="$home/logs" \
    -Dcassandra.storagedir="$home" \
    -Dcassandra-foreground=yes \
    -cp "$home/conf:$dir/lib/*" \
    org.apache.cassandra.service.CassandraDaemon \
    </dev/null >"$home/logs/stdout.log" 2>&1 &
  echo $! >"$home/pid"
}

cql_up() { # address
  (exec 3<>"/dev/tcp/$1/9042") 2>/dev/null
}

wait_for() { # count
  local deadline=$((SECONDS + wait_s)) n=$1
  while read -r name address _; do
    until cql_up "$address"; do
      if ! kill -0 "$(cat "$dir/$name/pid")" 2>/dev/null; then
        echo "cassandra: node $name exited while starting:" >&2
        tail -30 "$dir/$name/logs/stdout.log" "$dir/$name/logs/system.log" >&2 || true
        exit 1
      fi
      if [ $SECONDS -ge $deadline ]; then
        echo "cassandra: node $name gave no CQL on $address:9042 within ${wait_s}s" >&2
        tail -30 "$dir/$name/logs/system.log" >&2 || true
        exit 1
      fi
      sleep 1
    done
    echo "cassandra: node $name ($address) serves CQL" >&2
  done < <(nodes_of "$n")
  if [ "$n" -ge 2 ]; then
    # Each node must have seen the other: a Paxos round needs both.
    until grep -q '/127.0.0.3:7000 is now UP' "$dir/seoul/logs/system.log" 2>/dev/null &&
      grep -q '/127.0.0.2:7000 is now UP' "$dir/virginia/logs/system.log" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        echo "cassandra: the two data centers did not see each other within ${wait_s}s" >&2
        exit 1
      fi
      sleep 1
    done
    echo "cassandra: seoul and virginia see each other" >&2
  fi
}

stop() {
  for home in "$dir"/*/; do
    [ -f "$home/pid" ] || continue
    local pid
    pid=$(cat "$home/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -rf "$home"
  done
  rm -f "$dir/nodes"
}

env_of() {
  local n
  n=$(cat "$dir/nodes" 2>/dev/null || echo 0)
  if [ "$n" -ge 2 ]; then
    echo "export SCYLLA_URI='scylla://127.0.0.2:9042,127.0.0.3:9042/switchboard_test?dc=seoul'"
    echo "export SCYLLA_URI_REMOTE='scylla://127.0.0.3:9042,127.0.0.2:9042/switchboard_test?dc=virginia'"
    echo "export SCYLLA_REPLICATION='seoul=1,virginia=1'"
  elif [ "$n" -eq 1 ]; then
    echo "export SCYLLA_URI='scylla://127.0.0.2:9042/switchboard_test?dc=seoul'"
    echo "export SCYLLA_REPLICATION='seoul=1'"
  else
    echo "cassandra: no cluster is running" >&2
    exit 1
  fi
}

case "${1:-}" in
  start)
    n="${2:-2}"
    command -v "$java" >/dev/null || { echo "cassandra: no java (17) on PATH" >&2; exit 1; }
    mkdir -p "$dir"
    stop
    jars
    seeds=$(nodes_of "$n" | awk '{print $2}' | paste -sd,)
    while read -r name address dc; do
      start_node "$name" "$address" "$dc" "$seeds"
    done < <(nodes_of "$n")
    wait_for "$n"
    echo "$n" >"$dir/nodes"
    ;;
  env) env_of ;;
  stop) stop ;;
  *) echo "usage: $0 start [1|2] | env | stop" >&2; exit 2 ;;
esac
