#!/usr/bin/env bash
# The collapse pilot (docs/study.md, "Pilot"): GRPO, seed 0, from the demo's base policy (params.yaml's
# init on this CPU), under a few regimes, each to its own project root ROOT/<name>; every cell
# evaluated on the 500 held-out problems with 64 samples at T 0.7, and the base policy alike.
#
#   studies/collapse/pilot/run_pilot.sh ROOT BASE_PROJECT NAME...
#
# NAME `base` evaluates the base policy in lr3e-4_600's root (after that regime ran).
# BASE_PROJECT: a project whose data/{prepared,base_model} came from `rftctl prepare` and
# `rftctl init` with params.yaml (e.g. a finished `make demo`). NAME: one of the regimes below.
# Each cell runs with one thread (OMP_NUM_THREADS=1), so two pilots share a 2-core machine.
set -euo pipefail
ROOT=$1; BASE=$2; shift 2
HERE=$(cd "$(dirname "$0")/../../.." && pwd)
EVAL=(-S evaluate.sampling.n=64 -S evaluate.sampling.temperature=0.7 -S 'report.ks=[1,2,4,8,16,32,64]')
COMMON=(-S train.theory_in_loop=false -S train.checkpoint_every=50 -S 'seeds=[0]')

POOL256='prepare.train=[{name: arith, source: procedural, options: {n: 256, levels: [1, 2]}}]'
POOL64='prepare.train=[{name: arith, source: procedural, options: {n: 64, levels: [1, 2]}}]'
regime() {  # the overrides of each regime, into the array `over`
  case $1 in
    lr3e-4_600) over=(-S train.steps=600) ;;
    lr1e-3_300) over=(-S train.steps=300 -S train.lr=0.001) ;;
    lr1e-3_300_pool256) over=(-S train.steps=300 -S train.lr=0.001 -S "$POOL256") ;;
    lr3e-4_300_upd2) over=(-S train.steps=300 -S train.updates_per_batch=2) ;;
    lr3e-4_400_pool256) over=(-S train.steps=400 -S "$POOL256") ;;
    lr5e-4_400) over=(-S train.steps=400 -S train.lr=0.0005) ;;
    lr5e-4_500_pool256) over=(-S train.steps=500 -S train.lr=0.0005 -S "$POOL256") ;;
    lr3e-4_400_pool64) over=(-S train.steps=400 -S "$POOL64") ;;
    # the lr5e-4_500_pool256 run continued to 700 steps (a copy of its project: resumes at 500)
    lr5e-4_700_pool256) over=(-S train.steps=700 -S train.lr=0.0005 -S "$POOL256") ;;
    lr5e-4_500_pool64) over=(-S train.steps=500 -S train.lr=0.0005 -S "$POOL64") ;;
    *) echo "unknown regime $1" >&2; exit 2 ;;
  esac
}

for name in "$@"; do
  if [[ $name == base ]]; then  # the base policy's row, in the first regime's root
    dir=$ROOT/lr3e-4_600
    OMP_NUM_THREADS=1 rftctl -p "$HERE/params.yaml" --root "$dir" "${COMMON[@]}" "${EVAL[@]}" evaluate --base
    continue
  fi
  dir=$ROOT/$name
  mkdir -p "$dir/data"
  regime "$name"
  if [[ ! -f $dir/data/filtered/train.jsonl ]]; then
    [[ -d $dir/data/base_model ]] || cp -r "$BASE/data/base_model" "$dir/data/"
    rftctl -p "$HERE/params.yaml" --root "$dir" "${COMMON[@]}" "${over[@]}" prepare
    rftctl -p "$HERE/params.yaml" --root "$dir" "${COMMON[@]}" "${over[@]}" filter  # off: a copy
  fi
  OMP_NUM_THREADS=1 rftctl -p "$HERE/params.yaml" --root "$dir" "${COMMON[@]}" "${over[@]}" train --run none
  OMP_NUM_THREADS=1 rftctl -p "$HERE/params.yaml" --root "$dir" "${COMMON[@]}" "${over[@]}" "${EVAL[@]}" evaluate --run none
done
