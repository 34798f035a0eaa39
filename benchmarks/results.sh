#!/usr/bin/env bash
# The runs behind docs/results.md: every shipped digits and Gaussian recipe over seeds 0, 1, 2, one CPU thread each,
# JOBS at a time (default: all cores). Then `fairadv compare` groups seeds into mean ± std.
#
#   bash benchmarks/results.sh [OUT=runs/results] [JOBS=$(nproc)]
set -euo pipefail
OUT=${1:-runs/results}
JOBS=${2:-$(nproc)}
FAIRADV=${FAIRADV:-fairadv}
ONLY=${ONLY:-}  # a regular expression: run only the jobs whose run name matches
jobs=()
for seed in 0 1 2; do
  for recipe in trades_digits dafa_digits frl_digits cfa_digits trades_gaussian dafa_gaussian; do
    jobs+=("$recipe $seed ${recipe}_s$seed")
  done
  jobs+=("trades_digits $seed trades_digits_bf16_s$seed --set train.precision=bf16")
  # bf16 with BatchNorm folded into the attack's convolutions (fold_bn is automatic with bf16): a BatchNorm model.
  wrn="--set model.name=wideresnet --set model.depth=10 --set model.widen_factor=1"
  jobs+=("trades_digits $seed trades_digits_wrn_s$seed $wrn")
  jobs+=("trades_digits $seed trades_digits_wrn_bf16_s$seed $wrn --set train.precision=bf16")
  # A harder threat model on digits: eps 0.2 (3.2 grey levels) in training, evaluation and the strategies' own attacks.
  eps2="--set attack.eps=0.2 --set attack.step_size=0.05 --set eval.attack.eps=0.2 --set eval.attack.step_size=0.02"
  val2="--set strategy.val_eps=0.2 --set strategy.val_step_size=0.05"
  jobs+=("trades_digits $seed trades_digits_eps0.2_s$seed $eps2")
  jobs+=("dafa_digits $seed dafa_digits_eps0.2_s$seed $eps2")
  jobs+=("frl_digits $seed frl_digits_eps0.2_s$seed $eps2 $val2")
  jobs+=("cfa_digits $seed cfa_digits_eps0.2_s$seed $eps2 $val2 --set strategy.fawa_threshold=0.4")
  # DAFA's sensitivity to lambda on the symmetric close pair.
  jobs+=("dafa_gaussian $seed dafa_gaussian_lam0.3_s$seed --set strategy.lam=0.3")
  for near in 0.1 0.3; do
    for recipe in trades_gaussian dafa_gaussian; do
      jobs+=("$recipe $seed ${recipe}_near${near}_s$seed --set data.near=$near")
    done
  done
done
printf '%s\n' "${jobs[@]}" | awk -v only="$ONLY" 'only == "" || $3 ~ only' | xargs -P "$JOBS" -L 1 bash -c \
  'OMP_NUM_THREADS=1 $0 run recipes/$1.toml --set run.seed=$2 --set run.name=$3 --set run.device=cpu --out '"$OUT"' --quiet "${@:4}" && echo "done $3"' "$FAIRADV"
