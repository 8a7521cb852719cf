#!/usr/bin/env bash
# Set up .venv with pytest-mlexp and the extras named in $1 (default: demo).
#   bash scripts/setup.sh            # the demo study: torch, numpy, scikit-learn, matplotlib
#   bash scripts/setup.sh dev        # everything the test suite needs (also wandb, modal, xdist,
#                                    # pytest-html, and Chromium for the HTML report's browser test)
# torch is installed here, not through pyproject, so that the build matches the machine:
#   - MLEXP_TORCH set: that pip requirement is installed as given (e.g. "torch==2.5.1").
#   - an NVIDIA GPU (nvidia-smi -L works): the default torch from your package index (CUDA build).
#   - no GPU: a CPU build: a local wheel when pip's find-links has one (no download), else the
#     CPU build from PyTorch's own CPU index.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-demo}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if [ -n "${MLEXP_TORCH:-}" ]; then
    echo "setup: installing ${MLEXP_TORCH} (from MLEXP_TORCH)"
    "${pip[@]}" "${MLEXP_TORCH}"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing torch from your package index (a CUDA build)"
    "${pip[@]}" torch
  elif "${pip[@]}" --no-index --no-deps "torch==2.13.0" >/dev/null 2>&1; then
    echo "setup: no NVIDIA GPU: installed the CPU build of torch 2.13.0 found in pip's find-links"
    "${pip[@]}" "torch==2.13.0"   # its dependencies; torch itself is already satisfied
  else
    echo "setup: no NVIDIA GPU: installing the CPU build of torch from PyTorch's CPU index"
    "${pip[@]}" torch --index-url https://download.pytorch.org/whl/cpu
    "${pip[@]}" torch
  fi
fi
"${pip[@]}" -e ".[${extras}]"

# The test of the pytest-html report renders it in a real browser: Debian's chromium, installed
# when it is missing and this machine can (root, apt-get); else that one test skips.
have_browser() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
    command -v google-chrome >/dev/null 2>&1 || command -v google-chrome-stable >/dev/null 2>&1
}
if [[ ",${extras}," == *",dev,"* ]] && ! have_browser; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Chromium (Debian's chromium package) for the HTML report's browser test"
    apt_install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
      -o DPkg::Lock::Timeout=600 chromium)
    # The package lists may be missing or stale on a fresh machine: update once, then retry.
    "${apt_install[@]}" >/dev/null 2>&1 ||
      { apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 && "${apt_install[@]}" >/dev/null 2>&1; } ||
      echo "setup: apt-get could not install chromium: the HTML report's browser test will fail until it is installed"
  else
    echo "setup: no Chromium, and it cannot be installed here (needs root and apt-get): the HTML report's browser test will skip"
  fi
fi
echo "setup: ready (.venv/bin/pytest)"
