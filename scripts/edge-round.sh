#!/usr/bin/env bash
# The edge agent (`fededge edge`) against a `fededge cloud` on loopback, as on a device: one registered device with its
# own data files (`fededge data split`, not the whole demo set), a federation of the `cnn` with sign + EF14.
#   1. The agent downloads and verifies model v0, trains, signs and sends its update; the broker acknowledges it and
#      the cloud aggregates it into v1 (its log: "v1 from 1 update(s)"); the agent verifies v1.
#   2. The cloud stops while the agent trains on v1: the update waits in the agent's outbox; the agent stops too.
#   3. Cloud and agent restart: the agent reopens its outbox, sends the update, the cloud makes v2 from it.
# Prints the agent's peak RSS (VmHWM) after round 1 and the time of each round.
#
#   scripts/edge-round.sh --arm64 DIR    the linux-arm64 publish in DIR under qemu-user (a step of scripts/check-arm64.sh)
#   scripts/edge-round.sh                the agent natively, from the Release build: step 1 only (the native figures)
#   ... --partition                      the agent keeps its share of the whole demo set (--partition iid) instead of
#                                        reading its own files (to compare the memory)
#
# The cloud always runs natively from the Release build (dotnet build cli/FedEdge.Cli -c Release, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=edge-round
emulated=""
partition=""
while (($#)); do
  case "$1" in
    --arm64)
      tag=check-arm64
      emulated=${2:?"--arm64 needs the publish directory"}
      shift 2
      ;;
    --partition) partition=1; shift ;;
    *) echo "edge-round: unknown argument $1 (--arm64 DIR, --partition)" >&2; exit 2 ;;
  esac
done
if [[ -n "$emulated" ]]; then
  # shellcheck source=arm64/emulate.sh
  source scripts/arm64/emulate.sh
  emulate_setup "$emulated"
fi

native_dll=cli/FedEdge.Cli/bin/Release/net10.0/fededge.dll
if [[ ! -f "$native_dll" ]]; then
  echo "$tag: building $native_dll for the cloud"
  dotnet build cli/FedEdge.Cli -c Release -v q -nologo >/dev/null
fi
native() { dotnet "$native_dll" "$@"; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do timeout 30 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "$tag: FAILED: $*" >&2
  for log in "$work"/*.log; do
    [[ -f "$log" ]] || continue
    echo "---- $(basename "$log") (last 25 lines)" >&2
    tail -n 25 "$log" >&2
  done
  exit 1
}

# A port nothing listens on (the broker, the silo and the gateway each need one; the defaults may be taken on a shared host).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

# wait_for LOG PATTERN SECONDS WHAT [PID]: waits for a line matching PATTERN; fails when PID exits first or time runs out.
wait_for() {
  local log=$1 pattern=$2 seconds=$3 what=$4 pid=${5:-}
  local deadline=$((SECONDS + seconds))
  until grep -qE "$pattern" "$log" 2>/dev/null; do
    [[ -z "$pid" ]] || kill -0 "$pid" 2>/dev/null || fail "$what: the process ended first"
    ((SECONDS < deadline)) || fail "$what: not seen within $seconds s"
    sleep 0.5
  done
}

line() { grep -E "$2" "$1" | tail -n 1 | sed 's/^ *//'; }

# Peak resident memory of a running process in MB (VmHWM).
peak_mb() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  timeout 60 tail --pid="$1" -f /dev/null || fail "process $1 did not stop within 60 s of SIGTERM"
}

broker_port=$(free_port)
silo_port=$(free_port)
gateway_port=$(free_port)
cloud_data="$work/cloud"
state="$work/edge-state"

# The device's own data: its IID share of Fashion-MNIST among 20 devices (3000 training and 500 test samples).
if [[ -n "$partition" ]]; then
  data_args=(--data fashion-mnist --partition iid --partition-count 20 --partition-index 0)
else
  data_args=(--data "$(native data split --data fashion-mnist --partition iid --devices 20 --index 0 --out "$work/pi-01-data")") || fail "fededge data split"
fi
native devices add pi-01 --federation pi --data-dir "$cloud_data" --out "$work/pi-01.json" \
  --broker "mqtt://127.0.0.1:$broker_port" >/dev/null || fail "fededge devices add"

start_cloud() {
  # A long round deadline: the round waits for the device's update across the cloud's restart.
  # dotnet itself, not through native(): $! must be the cloud's pid for stop to reach it.
  FEDEDGE_Cloud__Federations__pi__Config__RoundDeadline=00:30:00 dotnet "$native_dll" cloud --data-dir "$cloud_data" \
    --port "$broker_port" --bind 127.0.0.1 --silo-port "$silo_port" --gateway-port "$gateway_port" \
    --federation pi --model cnn --codec sign --rounds 2 >"$work/$1.log" 2>&1 &
  cloud=$!
  pids+=("$cloud")
}

start_agent() {
  local log="$work/$1.log" pidfile="$work/$1.pid"
  # The settings of deploy/systemd/edge.env: workstation GC, conserving memory; two training threads.
  local args=(edge --credentials "$work/pi-01.json" "${data_args[@]}" --state-dir "$state" --ef ef14)
  export DOTNET_gcServer=0 DOTNET_GCConserveMemory=5 FEDEDGE_Edge__Training__Threads=2 Logging__LogLevel__MQTTnet=Warning
  if [[ -n "$emulated" ]]; then
    emulate_run "$pidfile" "${args[@]}" >"$log" 2>&1 &
  else
    bash -c "echo \$\$ > '$pidfile'; exec dotnet '$native_dll' \"\$@\"" fededge "${args[@]}" >"$log" 2>&1 &
  fi
  pids+=("$!")
  local deadline=$((SECONDS + 10))
  until [[ -s "$pidfile" ]]; do ((SECONDS < deadline)) || fail "the agent did not start"; sleep 0.1; done
  agent=$(cat "$pidfile")
  pids+=("$agent")
}

where=natively
[[ -z "$emulated" ]] || where="linux-arm64 under $(basename "$qemu")"

# 1. One full round.
start_cloud cloud-1
wait_for "$work/cloud-1.log" "Published model v0 of pi" 120 "cloud start (model v0 published)" "$cloud"
echo "$tag: fededge cloud (native) on 127.0.0.1:$broker_port, federation pi (cnn, sign + EF14); fededge edge $where"
round_start=$SECONDS
start_agent edge-1
wait_for "$work/edge-1.log" "Model v0 verified" 300 "agent: model v0 downloaded and verified" "$agent"
wait_for "$work/edge-1.log" "Round on cluster 0 v0" 600 "agent: round on v0 trained, signed and queued" "$agent"
wait_for "$work/edge-1.log" "acknowledged by the broker" 120 "agent: update acknowledged" "$agent"
wait_for "$work/cloud-1.log" "Federation pi: v1 from 1 update" 120 "cloud: v1 aggregated from the agent's update" "$cloud"
round1=$((SECONDS - round_start))
wait_for "$work/edge-1.log" "Model v1 verified" 120 "agent: model v1 downloaded and verified" "$agent"
peak1=$(peak_mb "$agent")
echo "$tag: agent: $(line "$work/edge-1.log" "Model v0 verified")"
echo "$tag: agent: $(line "$work/edge-1.log" "Round on cluster 0 v0")"
echo "$tag: agent: $(line "$work/edge-1.log" "acknowledged by the broker")"
echo "$tag: cloud: $(line "$work/cloud-1.log" "Federation pi: v1 from")"
echo "$tag: agent: $(line "$work/edge-1.log" "Model v1 verified")"
echo "$tag: round 1: ${round1} s from the agent's start to v1 (start-up included); agent peak RSS ${peak1} MB (VmHWM${emulated:+, emulator included})"

if [[ -z "$emulated" ]]; then
  # Natively the agent trains on v1 in about a second, faster than the cloud stops: step 2 would race.
  v0_seconds=$(line "$work/edge-1.log" "Round on cluster 0 v0" | sed -E 's/.* in ([0-9.]+) s;.*/\1/')
  echo "$tag: ok: edge agent $where: round 1 in ${round1} s (training ${v0_seconds} s), peak RSS ${peak1} MB"
  exit 0
fi

# 2. The cloud goes away while the agent trains on v1 (20–80 s under emulation): the update stays in the outbox.
stop "$cloud"
wait_for "$work/edge-1.log" "Round on cluster 0 v1" 600 "agent: round on v1 trained and queued while the cloud is down" "$agent"
! grep -q "Federation pi: v2 from" "$work/cloud-1.log" || fail "the update on v1 reached the cloud before it stopped; nothing was left in the outbox"
queued=$(find "$state/outbox" -maxdepth 1 -name '*.upd' | wc -l)
((queued == 1)) || fail "expected 1 update in the agent's outbox, found $queued"
peak_run=$(peak_mb "$agent")
stop "$agent"
echo "$tag: agent: $(line "$work/edge-1.log" "Round on cluster 0 v1")"
echo "$tag: cloud down: agent stopped with $queued update in its outbox (peak RSS of the run ${peak_run} MB)"

# 3. Both restart: the agent sends what its outbox kept, the cloud makes v2 from it.
start_cloud cloud-2
wait_for "$work/cloud-2.log" "Federation pi resumed at v1" 120 "cloud restart (resumed at v1)" "$cloud"
restart_start=$SECONDS
start_agent edge-2
wait_for "$work/edge-2.log" "reopened with 1 pending" 300 "agent restart: outbox reopened with the update" "$agent"
wait_for "$work/edge-2.log" "acknowledged by the broker" 300 "agent restart: kept update acknowledged" "$agent"
wait_for "$work/cloud-2.log" "Federation pi: v2 from 1 update" 120 "cloud: v2 aggregated from the kept update" "$cloud"
echo "$tag: agent: $(line "$work/edge-2.log" "reopened with 1 pending")"
echo "$tag: agent: $(line "$work/edge-2.log" "acknowledged by the broker")"
echo "$tag: cloud: $(line "$work/cloud-2.log" "Federation pi: v2 from")"
v0_seconds=$(line "$work/edge-1.log" "Round on cluster 0 v0" | sed -E 's/.* in ([0-9.]+) s;.*/\1/')
v1_seconds=$(line "$work/edge-1.log" "Round on cluster 0 v1" | sed -E 's/.* in ([0-9.]+) s;.*/\1/')
echo "$tag: ok: edge agent $where: round 1 in ${round1} s (training ${v0_seconds} s cold, ${v1_seconds} s on v1), peak RSS ${peak1} MB; restart delivered the outbox's update in $((SECONDS - restart_start)) s"
