#!/usr/bin/env bash
# Byz-EF21 vs the rule on EF21 messages over 50 rounds (issue 13): sign + EF21, sync, trimmed mean, default sim setting.
set -u
cd "$(dirname "$0")/../../.."
out=bench/results/2026-12-07-seam
dll=${FEDEDGE_DLL:-cli/FedEdge.Cli/bin/Release/net10.0/fededge.dll}
for attack in none sign-flip gaussian alie; do
  for over in estimates messages; do
    name=ef21x50-$over-$attack
    dotnet "$dll" sim --give-up 180 --json "$out/$name.json" --report "$out/$name.html" --mode sync --ef ef21 --ef21-over $over \
      --aggregator trimmed-mean --attack $attack --rounds 50 > "$out/$name.log" 2>&1
    echo "$name: $(grep -E '^done' "$out/$name.log")"
  done
done
