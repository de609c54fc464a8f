#!/usr/bin/env bash
# Installs what FedEdge needs from Debian's packages on a fresh machine with the .NET SDK.
#   scripts/install-deps.sh          what the main job needs (Fashion-MNIST)
#   scripts/install-deps.sh --test   plus what the test suite needs (PyTorch/ONNX peers, Mosquitto, ...)
set -euo pipefail

packages=(dataset-fashion-mnist)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(python3 python3-numpy python3-onnx python3-torch mosquitto)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Mosquitto's packaged service is not wanted: tests start their own broker on a free port.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
