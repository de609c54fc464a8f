#!/usr/bin/env bash
# The Raspberry Pi (linux-arm64) edge build: publishes `fededge` self-contained for linux-arm64 and, under qemu-user,
#   1. runs `fededge train` for a few steps: the managed code, the .NET runtime and ONNX Runtime's arm64 library;
#   2. runs the whole edge agent against a native `fededge cloud` on loopback (scripts/edge-round.sh --arm64): MQTT,
#      the model's SHA-256 and signature checks (OpenSSL), training, the signed update, its acknowledgement and the
#      version the cloud makes from it; then a restart of the agent with an update still in its outbox.
#
#   scripts/check-arm64.sh                 publish to artifacts/linux-arm64 and run the checks (4–6 min on 2 shared cores)
#   scripts/check-arm64.sh --no-publish    reuse an earlier publish
#
# Needs (scripts/install-deps.sh --arm64): qemu-user-static and the arm64 libraries the emulated board needs
# (scripts/arm64/emulate.sh lists them), plus the native Release build of cli/FedEdge.Cli for the cloud.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=check-arm64

out=artifacts/linux-arm64
if [[ "${1:-}" != "--no-publish" ]]; then
  echo "check-arm64: dotnet publish cli/FedEdge.Cli -r linux-arm64 --self-contained -> $out"
  log=$(mktemp)
  if ! dotnet publish cli/FedEdge.Cli -c Release -r linux-arm64 --self-contained -o "$out" -p:DebugType=none >"$log" 2>&1; then
    grep -E "error|Error" "$log" | sort -u | tail -n 20 >&2
    echo "check-arm64: publish failed (full log: $log)" >&2
    exit 1
  fi
  rm -f "$log"
fi

# shellcheck source=arm64/emulate.sh
source scripts/arm64/emulate.sh
emulate_setup "$out"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "check-arm64: fededge train --model mlp --data fashion-mnist --steps 5 under $(basename "$qemu")"
start=$(date +%s)
emulate_run /dev/null train --model mlp --data fashion-mnist --steps 5 --batch 64 --threads 2 --out "$work/mlp.onnx" \
  --metrics "$work/metrics.json" | tail -n 5
test -s "$work/mlp.onnx" || { echo "check-arm64: no trained model was written" >&2; exit 1; }
echo "check-arm64: ok ($(($(date +%s) - start)) s under emulation; trained model $(stat -c %s "$work/mlp.onnx") bytes)"

start=$(date +%s)
bash scripts/edge-round.sh --arm64 "$out"
echo "check-arm64: edge agent round and restart: $(($(date +%s) - start)) s under emulation"
