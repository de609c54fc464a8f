#!/usr/bin/env bash
# Drift scenarios (docs/drift.md): FedAvg vs IFCA vs FedDAA on Fashion-MNIST, in-process harness.
# Usage: bench/drift/run.sh [scenario ...]   (default: feddaa-fmnist-small)
# Writes bench/drift/results/<scenario>.{txt,json,html}. CPU-heavy: runs under nice on shared machines.
set -euo pipefail
cd "$(dirname "$0")/../.."
dotnet build cli/FedEdge.Cli -c Release -v q -nologo >/dev/null
mkdir -p bench/drift/results
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(feddaa-fmnist-small)
for s in "${scenarios[@]}"; do
  out=bench/drift/results/$s
  nice -n 10 dotnet cli/FedEdge.Cli/bin/Release/net10.0/fededge.dll sim --scenario "$s" --seed "${SEED:-0}" \
    --json "$out.json" --report "$out.html" 2> "$out.progress.log" | tee "$out.txt"
done
