# Sourced by scripts/check-arm64.sh and scripts/edge-round.sh: runs the linux-arm64 publish of `fededge` under
# qemu-user as a Raspberry Pi would run it.
#
#   emulate_setup DIR               checks the publish in DIR and what the emulated board needs; fails naming the install step
#   emulate_run PIDFILE ARGS...     runs DIR/fededge ARGS; the emulator's pid goes to PIDFILE (/dev/null when not wanted)
#
# What the emulated board needs (scripts/install-deps.sh --arm64; on Raspberry Pi OS they are there already):
# qemu-user-static; the arm64 loader and C/C++ runtime that the .NET host and ONNX Runtime's libonnxruntime.so link
# against (libc6:arm64, libstdc++6:arm64, which brings libgcc-s1:arm64); the arm64 OpenSSL (libssl3:arm64), which
# .NET's cryptography loads when the agent checks a model's SHA-256 and the cloud's Ed25519 signature.

emulate_fail() {
  echo "${tag:-arm64}: $*" >&2
  exit 1
}

emulate_setup() {
  emulated=$1
  qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
  [[ -n "$qemu" ]] || emulate_fail "qemu-aarch64-static not found; run scripts/install-deps.sh --arm64"
  [[ -e /lib/ld-linux-aarch64.so.1 ]] || emulate_fail "the arm64 loader /lib/ld-linux-aarch64.so.1 is missing (libc6:arm64); run scripts/install-deps.sh --arm64"
  [[ -e /usr/lib/aarch64-linux-gnu/libstdc++.so.6 ]] || emulate_fail "the arm64 C++ runtime is missing (libstdc++6:arm64); run scripts/install-deps.sh --arm64"
  [[ -e /usr/lib/aarch64-linux-gnu/libssl.so.3 ]] || emulate_fail "the arm64 OpenSSL is missing (libssl3:arm64; .NET's SHA-256 and Ed25519 need it); run scripts/install-deps.sh --arm64"
  # ELF e_machine (bytes 18-19) is 183 for AArch64.
  [[ $(od -An -tu2 -j18 -N2 "$emulated/fededge" | tr -d ' ') == 183 ]] || emulate_fail "$emulated/fededge is not an arm64 executable"
  [[ -f "$emulated/libonnxruntime.so" ]] || emulate_fail "$emulated/libonnxruntime.so is missing from the publish"

  # qemu-user 7.2 passes the host's /proc/cpuinfo through, and ONNX Runtime's CPU detection (pytorch/cpuinfo) crashes
  # with SIGSEGV on an x86 one when it loads (seen on 2026-12-04 with kernel 6.18). A board shows an arm64 cpuinfo, so
  # the emulated process gets one (scripts/arm64/cpuinfo: a Raspberry Pi 5's two first cores) in a private mount namespace.
  cpuinfo=$(realpath "$(dirname "${BASH_SOURCE[0]}")/cpuinfo")
  if unshare --mount true 2>/dev/null; then
    namespace=(unshare --mount)
  elif unshare --map-root-user --mount true 2>/dev/null; then
    namespace=(unshare --map-root-user --mount)
  else
    namespace=()
    echo "${tag:-arm64}: cannot create a mount namespace; running with the host's /proc/cpuinfo" >&2
  fi
}

emulate_run() {
  local pidfile=$1
  shift
  local bind=""
  ((${#namespace[@]} == 0)) || bind="mount --bind '$cpuinfo' /proc/cpuinfo && "
  # The shell writes its pid and then becomes the emulator (exec; unshare without --fork execs too), so the pid is the
  # emulated process's, whose /proc/PID/status VmHWM is the board process's peak RSS plus qemu's own.
  # QEMU_LD_PREFIX: where qemu finds the arm64 loader and libraries (Debian's multiarch layout under /).
  # DOTNET_EnableWriteXorExecute=0, under emulation only: with W^X the JIT writes code through a second (writable)
  # mapping of the same memory, which qemu-user does not see as a write to code it has translated, so it may run the
  # stale translation (an agent crashed with SIGSEGV in training on 2026-12-07; dotnet/runtime#94909). A real Pi keeps W^X.
  "${namespace[@]}" bash -c "echo \$\$ > '$pidfile'; ${bind}exec env QEMU_LD_PREFIX=/ DOTNET_TieredPGO=0 DOTNET_EnableWriteXorExecute=0 '$qemu' '$emulated/fededge' \"\$@\"" fededge "$@"
}
