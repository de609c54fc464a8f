#!/usr/bin/env bash
# Issue 13's measurements, one after the other (2-core machine): the modes × attacks table at 600 updates per run,
# Byz-EF21 vs the rule on EF21 messages, and sync vs async under heterogeneous devices. Every other flag is the
# default sim setting (20 devices, cnn, Dirichlet(0.5), sign, momentum SGD lr 0.01, <= 40 local steps, 2,000 test
# samples, seed 0). FEDEDGE_DLL points at a copy of the build, so the tree can be rebuilt meanwhile.
set -u
cd "$(dirname "$0")/../../.."
out=bench/results/2026-12-07-seam
dll=${FEDEDGE_DLL:-cli/FedEdge.Cli/bin/Release/net10.0/fededge.dll}
run() { # name, then sim flags
  local name=$1; shift
  dotnet "$dll" sim --give-up 90 --json "$out/$name.json" --report "$out/$name.html" "$@" > "$out/$name.log" 2>&1
  echo "$name: $(grep -E '^(done|time to)' "$out/$name.log" | tr '\n' ' ' || true) $(tail -1 "$out/$name.log" | grep -v wrote)"
}
part=${1:-all}
if [[ $part == all || $part == modes ]]; then
  for attack in none sign-flip gaussian alie; do
    run m600-sync-$attack --mode sync --aggregator trimmed-mean --attack $attack --rounds 30
    run m600-fedbuff-$attack --mode fedbuff --aggregator trimmed-mean --attack $attack --rounds 60
    run m600-fedfix-$attack --mode fedfix --period 3 --aggregator trimmed-mean --attack $attack --rounds 30
  done
  for attack in none sign-flip gaussian; do run m600-fedasync-$attack --mode fedasync --aggregator mean --attack $attack --rounds 600; done
  run m600-fedbuff-mean-gaussian --mode fedbuff --aggregator mean --attack gaussian --rounds 60
fi
if [[ $part == all || $part == ef21 ]]; then
  for attack in none sign-flip gaussian alie; do
    for over in estimates messages; do
      run ef21-$over-$attack --mode sync --ef ef21 --ef21-over $over --aggregator trimmed-mean --attack $attack --rounds 20
    done
  done
fi
if [[ $part == all || $part == hetero ]]; then
  hetero=(--attack none --device-speed lognormal:1.0 --stragglers 0.1 --straggler-slowdown 10 --target-accuracy 0.8)
  run het-sync "${hetero[@]}" --mode sync --rounds 40
  run het-fedbuff "${hetero[@]}" --mode fedbuff --rounds 80
  run het-fedfix "${hetero[@]}" --mode fedfix --period 3 --rounds 60
  run het-fedasync "${hetero[@]}" --mode fedasync --aggregator mean --rounds 800
fi
