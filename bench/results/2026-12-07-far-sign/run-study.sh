#!/bin/bash
# The FAR-SIGN study of 2026-12-07 (issue 14), as run: sequential, one process at a time on the 2-core machine.
set -e
F=cli/FedEdge.Cli/bin/Release/net10.0/fededge
R=bench/results/2026-12-07-far-sign
# Tuning (records in tuning-logreg.jsonl and tuning.jsonl; 2,000 test images each): logreg schedules over 10 simulated s,
# e.g.
#   $F bench far-sign --method far-sign --budget 10 --checkpoints 5 --eval-samples 2000 --quiet --far-sign "alpha=158.114,k0=100000"
# then the two best over 30 s under sign flips, FedBuff's learning rate (0.02, 0.05, 0.1), and the MLP's α₀ (16, 48).
$F bench far-sign --model logreg --method far-sign,fedbuff --attack all --budget 30 --json $R/logreg.jsonl > $R/logreg.log 2>&1
$F bench far-sign --model logreg --method far-sign --order zeroth --directions 64 --budget 10 --json $R/logreg-zeroth.jsonl > $R/logreg-zeroth.log 2>&1
$F bench far-sign --model mlp --method far-sign,fedbuff --attack all --budget 20 --checkpoints 20 --far-sign alpha=48 --json $R/mlp.jsonl > $R/mlp.log 2>&1
python3 $R/summarize.py $R/logreg.jsonl $R/logreg-zeroth.jsonl $R/mlp.jsonl
