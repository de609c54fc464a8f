#!/usr/bin/env bash
# FedMM through the real processes: `fededge cloud` (embedded broker, co-hosted silo) starts a FedMM federation of the
# zoo logreg; three `fededge edge` agents, each with its own data files, read the algorithm from the signed model
# announcements, compute their surrogate statistics and send them. Usage: bench/results/2026-12-07-fedmm-cli/run.sh [ALGORITHM] [ROUNDS] [MODE]
set -euo pipefail
cd "$(dirname "$0")/../../.."
algorithm=${1:-fedmm:surrogate=logistic}
rounds=${2:-4}
mode=${3:-sync}
dll=cli/FedEdge.Cli/bin/Release/net10.0/fededge.dll
[[ -f $dll ]] || dotnet build cli/FedEdge.Cli -c Release -v q -nologo >/dev/null
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
for i in 0 1 2; do
  dotnet $dll devices add dev-$i --federation demo --data-dir "$work/cloud" --out "$work/dev-$i.json" --broker "mqtt://127.0.0.1:$port" >/dev/null
  data[$i]=$(dotnet $dll data split --data fashion-mnist --partition dirichlet:0.5 --devices 3 --index $i --out "$work/data-$i")
done
dotnet $dll cloud --data-dir "$work/cloud" --port "$port" --bind 127.0.0.1 --silo-port $((port + 1)) --gateway-port $((port + 2)) \
  --federation demo --model logreg --codec fp16 --rounds "$rounds" --mode "$mode" --algorithm "$algorithm" $([[ $algorithm == far-sign* ]] || echo --l1 0.0001) >"$work/cloud.log" 2>&1 &
pids+=($!)
until grep -q "Published model v0 of demo" "$work/cloud.log"; do sleep 0.5; done
for i in 0 1 2; do
  dotnet $dll edge --credentials "$work/dev-$i.json" --data "${data[$i]}" --state-dir "$work/edge-$i" --ef none >"$work/edge-$i.log" 2>&1 &
  pids+=($!)
done
deadline=$((SECONDS + 300))
until grep -q "Published model v$rounds of demo" "$work/cloud.log"; do
  ((SECONDS < deadline)) || { echo "no v$rounds within 300 s"; tail -n 20 "$work"/*.log; exit 1; }
  sleep 0.5
done
grep -hE "started|Published model v|from [0-9]+ update" "$work/cloud.log" | sed 's/^ *//' | head -n 20
grep -hE "Statistics for|Answers for|Round on" "$work/edge-0.log" | sed 's/^ *//' | head -n 10
