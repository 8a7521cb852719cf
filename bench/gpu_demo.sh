#!/usr/bin/env bash
# The demo study on a CUDA machine through the local and process executors (run by hand on a
# GPU box: bash bench/gpu_demo.sh). Works on a copy, so the committed example outputs stay.
# Uses the machine's python3 with torch, scikit-learn and matplotlib; pytest-mlexp from this tree.
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$src${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg WANDB_MODE=disabled PYTHONUNBUFFERED=1
out="${OUT:-/tmp/gpu_demo_out}"; mkdir -p "$out"
nvidia-smi -L
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
work=$(mktemp -d); cp -r "$src/research" "$src/experiments" "$src/conftest.py" "$work/"; printf '[pytest]\n' > "$work/pytest.ini"
cd "$work"
fresh() { rm -rf research/experiments/*/results*.yaml* research/experiments/*/FINDINGS.md research/FINDINGS.md research/artifacts research/experiments/*/.results*; }
run() {  # label, args...
  local label=$1; shift; fresh
  local t0=$(date +%s.%N)
  python3 -m pytest -p pytest_mlexp.plugin -p no:cacheprovider -q "$@" > "$out/$label.log" 2>&1; local rc=$?
  local t1=$(date +%s.%N)
  python3 -c "import sys; print(f\"{sys.argv[1]:<8} rc={sys.argv[2]} wall={float(sys.argv[4]) - float(sys.argv[3]):.1f}s\")" "$label" "$rc" "$t0" "$t1" | tee -a "$out/summary.txt"
  grep -E "^(Completed|verdict)|passed|failed" "$out/$label.log" | tail -6
  cp research/experiments/p2-mlp/results.yaml "$out/$label-p2-results.yaml" 2>/dev/null || true
}
run stub --experiment all --stub
run local --experiment all --mlexp-executor local
run process --experiment all --mlexp-executor process
grep -h "device" "$out"/*-p2-results.yaml | sort | uniq -c
