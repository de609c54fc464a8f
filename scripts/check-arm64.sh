#!/usr/bin/env bash
# The Raspberry Pi (linux-arm64) edge build: publishes `fededge` self-contained for linux-arm64 and runs
# `fededge train` for a few steps under qemu-user, to prove that the managed code, the .NET runtime and
# ONNX Runtime's native arm64 library work together on that architecture.
#
#   scripts/check-arm64.sh                 publish to artifacts/linux-arm64 and run the check
#   scripts/check-arm64.sh --no-publish    reuse an earlier publish
#
# Needs (scripts/install-deps.sh --arm64): qemu-user-static, and the arm64 loader and C/C++ runtime that
# ONNX Runtime's libonnxruntime.so links against (libc6:arm64, libstdc++6:arm64, which brings libgcc-s1:arm64).
set -euo pipefail
cd "$(dirname "$0")/.."

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

qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if [[ -z "$qemu" ]]; then
  echo "check-arm64: qemu-aarch64-static not found; run scripts/install-deps.sh --arm64" >&2
  exit 1
fi
if [[ ! -e /lib/ld-linux-aarch64.so.1 ]]; then
  echo "check-arm64: the arm64 loader /lib/ld-linux-aarch64.so.1 is missing; run scripts/install-deps.sh --arm64" >&2
  exit 1
fi

# ELF e_machine (bytes 18-19) is 183 for AArch64.
[[ $(od -An -tu2 -j18 -N2 "$out/fededge" | tr -d ' ') == 183 ]] || { echo "check-arm64: $out/fededge is not an arm64 executable" >&2; exit 1; }
test -f "$out/libonnxruntime.so" || { echo "check-arm64: $out/libonnxruntime.so is missing from the publish" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# QEMU_LD_PREFIX: where qemu finds the arm64 loader and libraries (Debian's multiarch layout under /).
emulate() { QEMU_LD_PREFIX=/ DOTNET_TieredPGO=0 "$qemu" "$out/fededge" "$@"; }

# qemu-user 7.2 passes the host's /proc/cpuinfo through, and ONNX Runtime's CPU detection (pytorch/cpuinfo) crashes
# with SIGSEGV on an x86 one when it loads (seen on 2026-12-04 with kernel 6.18). A board shows an arm64 cpuinfo, so the
# emulated process gets one (scripts/arm64/cpuinfo: a Raspberry Pi 5's two first cores) in a private mount namespace.
cpuinfo=$(realpath scripts/arm64/cpuinfo)
if unshare --mount true 2>/dev/null; then
  namespace=(unshare --mount)
elif unshare --map-root-user --mount true 2>/dev/null; then
  namespace=(unshare --map-root-user --mount)
else
  namespace=()
  echo "check-arm64: cannot create a mount namespace; running with the host's /proc/cpuinfo" >&2
fi
run() {
  if ((${#namespace[@]} == 0)); then emulate "$@"; return; fi
  "${namespace[@]}" bash -c "$(declare -f emulate); qemu='$qemu' out='$out'; mount --bind '$cpuinfo' /proc/cpuinfo && emulate \"\$@\"" check-arm64 "$@"
}

echo "check-arm64: fededge train --model mlp --data fashion-mnist --steps 5 under $(basename "$qemu")"
start=$(date +%s)
run train --model mlp --data fashion-mnist --steps 5 --batch 64 --threads 2 --out "$work/mlp.onnx" \
  --metrics "$work/metrics.json" | tail -n 5
test -s "$work/mlp.onnx" || { echo "check-arm64: no trained model was written" >&2; exit 1; }
echo "check-arm64: ok ($(($(date +%s) - start)) s under emulation; trained model $(stat -c %s "$work/mlp.onnx") bytes)"
