#!/usr/bin/env bash
# Every recipe of experiments/beyond-the-paper/README.md, 3 seeds each, one sweep after another (2 cores: never two
# at once), into one MLflow store; then the comparison table. Rerun to resume: finished jobs are skipped.
#   experiments/beyond-the-paper/run.sh /path/to/recordings [WORKDIR]
set -euo pipefail
root=${1:?usage: run.sh DATA_ROOT [WORKDIR]}
work=$(realpath -m "${2:-beyond-the-paper}")   # absolute: the script runs from the repository root
mkdir -p "$work"
cd "$(dirname "$0")/../.."
common=(data.root="$root" paths.cache="$work/cache" paths.outputs="$work/out" progress=false
        logger.tracking_uri="sqlite:///$work/mlflow.db")
recipe() {
  local name=$1; shift
  echo "$(date +%T) $name: $*"
  /usr/bin/time -f "$name: %e s wall, %U s user, %S s sys, %M KB peak" \
    .venv/bin/python train.py -m "$@" seed=0,1,2 "${common[@]}" hydra.sweep.dir="$work/multirun/$name" \
    > "$work/$name.log" 2>&1 || echo "$name: failed, see $work/$name.log"
}
recipe faithful experiment=real_audio
recipe cpresnet experiment=cpresnet
recipe finetune_lite0 experiment=finetune_lite0
recipe mixup_embeddings experiment=real_audio augment=mixup
recipe faithful_cover experiment=real_audio model.eval_windows=cover
recipe cpresnet_cover experiment=cpresnet model.eval_windows=cover
recipe best experiment=best   # = experiment=cpresnet augment=all model.eval_windows=cover
.venv/bin/asc compare --tracking-uri "sqlite:///$work/mlflow.db" --out "$work/compare" --combine 1+2 --combine 6+1
