#!/usr/bin/env bash
# The Fashion-MNIST study's core comparison on JAX without TensorFlow, sized for one GPU (under
# 10 minutes there): none, weight decay and Norm Loss on the `fashion-mnist` preset, each
# factor (1e-5 ... 1e-1) chosen on the validation split (seed 0), then seeds 0-2 at the chosen
# factors and the paired difference Norm Loss - weight decay with its 95 % interval. No peers, no
# batch sweep: benchmarks/fashion_mnist_study.py does the whole study.
#
# Set up once, from the repository root (JAX's CUDA build; no TensorFlow):
#   python3 -m venv .venv-jax
#   .venv-jax/bin/pip install -r requirements-jax.txt "jax[cuda12]"
#   .venv-jax/bin/pip install --no-deps -e .
# The data: the four Fashion-MNIST IDX files in ~/.keras/datasets/fashion-mnist/ or
# /usr/share/datasets/fashion-mnist/ (Debian: apt-get install dataset-fashion-mnist), or
# --data-dir DIR. Then:
#   bash benchmarks/fashion_mnist_core_jax.sh            # resumable; extra options go to the study
# Outputs: runs/fashion-mnist-core-jax/ (the runs, choices.json) and its report/ (study.csv,
# paired.json, figures); `--docs docs/results/core-jax` writes those into the repository's record.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv-jax/bin/python}
export KERAS_BACKEND=jax
exec "$PYTHON" benchmarks/fashion_mnist_study.py --peers --batches \
  --seeds 0 1 2 --output runs/fashion-mnist-core-jax "$@"
