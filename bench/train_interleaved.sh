#!/usr/bin/env bash
# Interleaved training-throughput comparison (FedEdge, PyTorch, FedEdge, ...) on a shared machine: the ratio of
# neighbouring runs is what counts, since other jobs change both. Prints each RESULT line with the load average.
# Usage: bench/train_interleaved.sh [rounds] [model] [fededge command]
#   e.g. bench/train_interleaved.sh 3 cnn "dotnet cli/FedEdge.Cli/bin/Release/net10.0/fededge.dll"
set -euo pipefail
rounds=${1:-3}
model=${2:-cnn}
fededge=${3:-dotnet cli/FedEdge.Cli/bin/Release/net10.0/fededge.dll}
steps=${STEPS:-500}
peer_steps=${PEER_STEPS:-300}
here=$(cd "$(dirname "$0")" && pwd)
load() { cut -d' ' -f1 /proc/loadavg; }
for ((r = 1; r <= rounds; r++)); do
  echo "round $r load $(load) $($fededge bench train --model "$model" --batch 64 --threads 2 --steps "$steps" | grep '^RESULT')"
  echo "round $r load $(load) $(/usr/bin/python3 "$here/train_peer_pytorch.py" --model "$model" --batch 64 --threads 2 --steps "$peer_steps" | grep '^RESULT')"
done
echo "round end load $(load) $($fededge bench train --model "$model" --batch 64 --threads 2 --steps "$steps" | grep '^RESULT')"
