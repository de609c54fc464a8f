#!/usr/bin/env bash
# Installs what FedEdge needs from Debian's packages on a fresh machine with the .NET SDK.
#   scripts/install-deps.sh          what the main job needs (Fashion-MNIST)
#   scripts/install-deps.sh --test   plus what the test suite needs (PyTorch/ONNX peers, Mosquitto, arm64 emulation, ...)
#   scripts/install-deps.sh --arm64  only the arm64 emulation and the agent's arm64 libraries for scripts/check-arm64.sh
set -euo pipefail

packages=(dataset-fashion-mnist)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(python3 python3-numpy python3-onnx python3-torch python3-torchvision mosquitto redis-server systemd)
fi
# The linux-arm64 edge build runs under qemu-user (scripts/check-arm64.sh): the emulator, and what the agent needs at
# run time on the board (deploy/README.md): the arm64 loader and C/C++ runtime that the .NET host and ONNX Runtime's
# libonnxruntime.so link against (libgcc-s1:arm64 comes along) and OpenSSL, which .NET's cryptography loads for the
# model's SHA-256 and the Ed25519 signatures (Debian 13 and Raspberry Pi OS trixie name it libssl3t64).
[[ "${1:-}" == "--test" || "${1:-}" == "--arm64" ]] && packages+=(qemu-user-static libc6:arm64 libstdc++6:arm64 libssl3:arm64)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  [[ " ${missing[*]}" == *":arm64"* ]] && $sudo_cmd dpkg --add-architecture arm64
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Mosquitto's packaged service is not wanted: tests start their own broker on a free port.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
