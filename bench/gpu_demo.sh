#!/usr/bin/env bash
# The demo study on a CUDA machine through the local and process executors, side by side in one
# run (by hand on a GPU box: bash bench/gpu_demo.sh [REPEAT]; default 1). Prints each wall time,
# the process/local ratio (issue 19's target: <= 1.3x) and whether both executors produced the
# same metrics. Works on a copy, so the committed example outputs stay. Uses the machine's
# python3 (or $PYTHON) with torch, scikit-learn and matplotlib; pytest-mlexp from this tree.
# Never part of the test suite.
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
py="${PYTHON:-python3}"
repeat="${1:-1}"
export PYTHONPATH="$src${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg WANDB_MODE=disabled PYTHONUNBUFFERED=1
# Only this plugin: other installed plugins would add their import time to both sides.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
out="${OUT:-/tmp/gpu_demo_out}"; mkdir -p "$out"; : > "$out/summary.txt"
nvidia-smi -L
"$py" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
work=$(mktemp -d); cp -r "$src/research" "$src/experiments" "$src/conftest.py" "$work/"; printf '[pytest]\n' > "$work/pytest.ini"
cd "$work"
fresh() { rm -rf research/experiments/*/results*.yaml* research/experiments/*/FINDINGS.md research/FINDINGS.md research/artifacts research/experiments/*/.results*; }
run() {  # label, args...  (appends "label wall" to $out/walls.txt)
  local label=$1; shift; fresh
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$py" -m pytest -p pytest_mlexp.plugin -p no:cacheprovider -q "$@" > "$out/$label.log" 2>&1; rc=$?
  t1=$(date +%s.%N)
  "$py" -c "import sys; print(f\"{sys.argv[1]:<8} rc={sys.argv[2]} wall={float(sys.argv[4]) - float(sys.argv[3]):.1f}s\")" "$label" "$rc" "$t0" "$t1" | tee -a "$out/summary.txt"
  echo "$label $t0 $t1" >> "$out/walls.txt"
  grep -E "^(Completed|verdict)|passed|failed" "$out/$label.log" | tail -6
  for f in research/experiments/*/results.yaml; do
    [ -f "$f" ] && cp "$f" "$out/$label-$(basename "$(dirname "$f")")-results.yaml"
  done
}
: > "$out/walls.txt"
run stub --experiment all --stub
for i in $(seq 1 "$repeat"); do
  run local --experiment all --mlexp-executor local
  run process --experiment all --mlexp-executor process
done
grep -h "device" "$out"/*-p2-mlp-results.yaml 2>/dev/null | sort | uniq -c
"$py" - "$out" <<'EOF'
import statistics, sys
from pathlib import Path
import yaml

out = Path(sys.argv[1])
walls: dict[str, list[float]] = {}
for line in (out / "walls.txt").read_text().split("\n"):
    if line.strip():
        label, t0, t1 = line.split()
        walls.setdefault(label, []).append(float(t1) - float(t0))
local, process = statistics.median(walls["local"]), statistics.median(walls["process"])
print(f"local   {local:7.1f} s (median of {len(walls['local'])})")
print(f"process {process:7.1f} s (median of {len(walls['process'])})")
print(f"ratio   {process / local:7.2f}x   target <= 1.30x")

def measured(entry: dict) -> dict:
    """What a result measured (metrics, per seed and per sweep point), not where or when."""
    got = {k: entry[k] for k in ("metrics", "per_seed") if k in entry}
    for key, point in (entry.get("points") or {}).items():
        got[key] = measured(point)
    return got

def metrics(label: str) -> dict:
    found = {}
    for path in sorted(out.glob(f"{label}-*-results.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for sub, entry in (doc.get("sub_experiments") or {}).items():
            found[sub] = measured(entry)
    return found

same = metrics("local") == metrics("process")
print("metrics: identical under local and process" if same else "metrics: DIFFER between local and process")
EOF
