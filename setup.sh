#!/usr/bin/env bash
# Install everything this project needs on a fresh Debian-like machine, idempotently:
# system packages (Fashion-MNIST, PostgreSQL for the multi-worker tests, Chromium for the
# report test), the CPU build of torch *before* anything that depends on torch (so pip
# never pulls a multi-GB CUDA build), then this package with its test extras.
set -euo pipefail
cd "$(dirname "$0")"

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # tcmalloc: nas runs under it when present (see nas/allocator.py; up to 2.7x on CPU).
  ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 >/dev/null 2>&1 || missing+=(libtcmalloc-minimal4)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q torch==2.13.0
fi
"$PYTHON" -m pip install -q -e ".[dev]" 2>&1 | grep -v -E "^(WARNING: (Location|Running pip)|\[notice\])" || true
"$PYTHON" -c "import torch, optuna, nas, space, scaling" || {
  echo "setup: the install did not complete; see the pip output above" >&2; exit 1; }
