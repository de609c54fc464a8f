#!/usr/bin/env bash
# Learning runs of `fededge sim` (docs/learning.md): FedAvg fp32 vs sign + EF14 on Dirichlet(0.5), 10 devices, cnn,
# and the attack table (20 % attackers of each kind, robust default vs plain mean). Runs sequentially at low
# priority and writes results/<name>.json and results/<name>.html; then prints the table (summarize.py).
#   bash bench/learning/run.sh [default|attacks|attacks-50|main|all]      (default all; attacks-50 only when named)
# attacks-50: the issue's attack table on the README's default setting (20 devices, Dirichlet 0.5, sign + EF14, ≤ 40 local
# steps, 2,000 test samples) over 50 rounds: clean, then each attack at 20 % with the robust default (RULE, default
# trimmed-mean; RULE_FLAGS adds flags such as --bucket 2) and with the plain mean; records results/a50-<attack>-<rule>.*
# (the clean run configures the rule with the f of the attacked runs, 4 of 20: SimulationOptions.ByzantineCount).
# Environment: ROUNDS (main runs, default 50), ATTACK_ROUNDS (default 50), ATTACK_STEPS (local-step cap of the
# attack table, default 0 = full local epoch), SEED (default 0), FEDEDGE (the fededge command).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-50}
ATTACK_ROUNDS=${ATTACK_ROUNDS:-50}
ATTACK_STEPS=${ATTACK_STEPS:-0}
SEED=${SEED:-0}
OUT=bench/learning/results
mkdir -p "$OUT"
if [[ -z "${FEDEDGE:-}" ]]; then
  dotnet build -c Release cli/FedEdge.Cli >/dev/null
  FEDEDGE="dotnet cli/FedEdge.Cli/bin/Release/net10.0/fededge.dll"
fi
COMMON="--devices 10 --model cnn --partition dirichlet:0.5 --local-epochs 1 --optimizer momentum --lr 0.01 --eval-samples 0 --seed $SEED"

run() { # name, flags...
  local name=$1; shift
  echo "== $name: fededge sim $COMMON $*" | tee "$OUT/$name.log"
  nice -n 10 $FEDEDGE sim $COMMON "$@" --json "$OUT/$name.json" --report "$OUT/$name.html" 2>&1 | tee -a "$OUT/$name.log" \
    || echo "($name failed; see its log)"
}

what=${1:-all}
if [[ $what == default || $what == all ]]; then
  # README's first command (no flags): 20 devices, sign + EF14, robust default, 20 % ALIE.
  echo "== default: fededge sim" | tee "$OUT/default.log"
  nice -n 10 $FEDEDGE sim --json "$OUT/default.json" --report "$OUT/default.html" 2>&1 | tee -a "$OUT/default.log"
fi
if [[ $what == attacks || $what == all ]]; then
  # A round closes after 60 s with what arrived (devices whose training diverged send nothing); if no device sends
  # at all, the run stops after 10 min without a new version (TimeoutException) and leaves only its log.
  A="--rounds $ATTACK_ROUNDS --max-steps $ATTACK_STEPS --codec sign --ef ef14 --round-deadline 60"
  run attack-none-trimmed-mean $A --aggregator trimmed-mean --attack none
  for attack in sign-flip gaussian ipm alie label-flip; do
    run "attack-$attack-trimmed-mean" $A --aggregator trimmed-mean --attack "$attack" --attackers 0.2
    run "attack-$attack-mean" $A --aggregator mean --attack "$attack" --attackers 0.2
  done
fi
if [[ $what == attacks-50 ]]; then
  RULE=${RULE:-trimmed-mean}
  TAG=${TAG:-$RULE}
  ATTACKS=${ATTACKS:-"sign-flip gaussian ipm alie label-flip"}
  RULES=${RULES:-"robust mean"}
  run50() { # name, flags...  (the default sim's flags, 50 rounds; a run whose rounds stop coming gives up after 180 s)
    local name=$1; shift
    echo "== $name: fededge sim --rounds 50 --seed $SEED --round-deadline 60 --give-up 180 $*" | tee "$OUT/$name.log"
    nice -n 10 $FEDEDGE sim --rounds 50 --seed "$SEED" --round-deadline 60 --give-up 180 "$@" \
      --json "$OUT/$name.json" --report "$OUT/$name.html" 2>&1 | tee -a "$OUT/$name.log" || echo "($name failed; see its log)"
  }
  for rule in $RULES; do
    if [[ $rule == robust ]]; then r=$RULE; t=$TAG; flags=${RULE_FLAGS:-}; else r=$rule; t=$rule; flags=""; fi
    [[ ${CLEAN:-1} == 1 ]] && run50 "a50-none-$t" --aggregator "$r" $flags --attack none
    for attack in $ATTACKS; do
      run50 "a50-$attack-$t" --aggregator "$r" $flags --attack "$attack" --attackers 0.2
    done
  done
  /usr/bin/python3 bench/learning/summarize.py "$OUT" a50-
  exit 0
fi
if [[ $what == main || $what == all ]]; then
  run fedavg-fp32 --rounds "$ROUNDS" --max-steps 0 --codec fp32 --ef none --aggregator mean --attack none
  run sign-ef14-mean --rounds "$ROUNDS" --max-steps 0 --codec sign --ef ef14 --aggregator mean --attack none
fi
/usr/bin/python3 bench/learning/summarize.py "$OUT"
