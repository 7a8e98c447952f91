#!/bin/sh
# Download the wheels of ops/bench/gpu-wheels.txt (CPython 3.12, manylinux x86-64: the device image's
# Python) into DIR, here, where PyPI can be reached; carry DIR to the device and install with
#   python3 -m pip install --no-index --no-deps --find-links DIR -r ops/bench/gpu-wheels.txt
# Never commit the wheels. Usage: ops/bench/gpu_wheels.sh DIR
set -eu
dir=${1:?usage: ops/bench/gpu_wheels.sh DIR}
here=$(dirname "$0")
python3 -m pip download --quiet --dest "$dir" --no-deps --only-binary :all: \
    --implementation cp --python-version 3.12 --abi cp312 --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    -r "$here/gpu-wheels.txt"
ls "$dir"
du -sh "$dir"
