#!/usr/bin/env bash
# The modes × attacks table of docs/learning.md (issue 13): 20 devices, cnn, Dirichlet(0.5), sign + EF14, 20 % attackers,
# 200 updates per run (sync 10 rounds of 20; FedBuff 20 versions of K = 10; FedFix every 3 s; FedAsync 200 versions).
set -u
cd "$(dirname "$0")/../../.."
out=bench/results/2026-12-07-seam
fededge() { dotnet cli/FedEdge.Cli/bin/Release/net10.0/fededge.dll "$@"; }
run() { # name, then sim flags
  local name=$1; shift
  fededge sim --give-up 90 --json "$out/$name.json" --report /tmp/$name.html "$@" > "$out/$name.log" 2>&1
  echo "$name: $(grep -E '^done:' "$out/$name.log" || tail -1 "$out/$name.log")"
}
for attack in none sign-flip gaussian alie; do
  run sync-trimmed-mean-$attack --mode sync --aggregator trimmed-mean --attack $attack --rounds 10
  run fedbuff-trimmed-mean-$attack --mode fedbuff --aggregator trimmed-mean --attack $attack --rounds 20
done
for attack in none sign-flip gaussian; do
  run fedfix-trimmed-mean-$attack --mode fedfix --period 3 --aggregator trimmed-mean --attack $attack --rounds 20
  run fedasync-mean-$attack --mode fedasync --aggregator mean --attack $attack --rounds 200
done
run fedbuff-mean-gaussian --mode fedbuff --aggregator mean --attack gaussian --rounds 20
