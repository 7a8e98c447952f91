#!/usr/bin/env bash
# Create the Infinity venv the rerank benchmark compares against (outside the repository).
#   bash ops/bench/make_infinity_venv.sh [VENV_DIR]      (default: /work/infinity-venv)
# torch is installed first at the fleet's pinned CPU release, so pip keeps that wheel instead of
# pulling a multi-GB CUDA build as a dependency of infinity-emb.
set -euo pipefail
venv="${1:-/work/infinity-venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q "infinity-emb[server,torch]==0.0.78"
"$venv/bin/infinity_emb" --help >/dev/null
echo "$venv/bin/python"
