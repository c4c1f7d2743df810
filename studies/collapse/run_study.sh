#!/usr/bin/env bash
# Run the pre-registered collapse study (pipelines/collapse-study.yaml, docs/study.md) into this
# folder: every artifact under studies/collapse/data (weights, caches and samples git-ignored).
#
#   studies/collapse/run_study.sh WORKER WORKERS [BASE_PROJECT]
#
# Cells run seed by seed (all arms of seed 0, then seed 1, ...), so results that exist are
# balanced across arms; worker i of n takes cells i, i + n, ... One thread per cell: two workers
# share a 2-core machine. A finished cell is skipped (its eval metrics exist); an interrupted one
# resumes from its last checkpoint. BASE_PROJECT (first worker only, once): a project whose
# data/base_model came from `rftctl init` with params.yaml on this CPU kind (the study's init is
# params.yaml's; the preset changes nothing there); without it, `rftctl init` builds it here.
set -euo pipefail
WORKER=$1; WORKERS=$2; BASE=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
R=(rftctl -p "$REPO/params.yaml" --preset collapse-study --root "$HERE")
ARMS=(none clipb_mu05 clipb clipb_mu2 clipv random_neg)
SEEDS=(0 1 2 3 4 5)

if [[ $WORKER == 0 && ! -f $HERE/data/filtered/train.jsonl ]]; then
  mkdir -p "$HERE/data"
  "${R[@]}" prepare
  if [[ -n $BASE ]]; then cp -r "$BASE/data/base_model" "$HERE/data/"; else "${R[@]}" init; fi
  "${R[@]}" filter
fi
while [[ ! -f $HERE/data/filtered/train.jsonl ]]; do sleep 10; done

i=0
for seed in "${SEEDS[@]}"; do
  for arm in "${ARMS[@]}"; do
    if (( i % WORKERS == WORKER )) && [[ ! -f $HERE/data/metrics/eval/$arm/seed$seed.json ]]; then
      OMP_NUM_THREADS=1 "${R[@]}" train --run "$arm" --seed "$seed"
      OMP_NUM_THREADS=1 "${R[@]}" evaluate --run "$arm" --seed "$seed"
    fi
    i=$((i + 1))
  done
  if (( seed == 0 && WORKER == 0 )) && [[ ! -f $HERE/data/metrics/eval/base/seed0.json ]]; then
    OMP_NUM_THREADS=1 "${R[@]}" evaluate --base --seed 0   # the reference row of the Pass@K curve
  fi
done
