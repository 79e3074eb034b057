#!/usr/bin/env bash
# Installs torch 2.13.0 into the image's virtual environment.
#   cpu:  the CPU build, from the wheel that `make images` puts in wheels/ (PyPI's default torch is the CUDA build,
#         several GB with its NVIDIA libraries, which a CPU image must not carry)
#   cuda: PyPI's build, with the CUDA libraries it depends on
set -euo pipefail
device=${1:?cpu or cuda}
case $device in
  cpu)
    wheel=$(find /wheels -name 'torch-2.13.0+cpu-*.whl' | head -n 1)
    if [ -z "$wheel" ]; then
      echo "no CPU torch wheel (torch-2.13.0+cpu-*.whl) in wheels/: build with 'make images', which fetches it" >&2
      exit 1
    fi
    pip install --no-cache-dir "$wheel" ;;
  cuda) pip install --no-cache-dir torch==2.13.0 ;;
  *) echo "DEVICE must be cpu or cuda, not '$device'" >&2; exit 2 ;;
esac
