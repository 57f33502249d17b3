#!/usr/bin/env bash
# The main job: build the example environment (examples/containers.toml) into an image and run a
# script in it with CPU, memory, process and network limits, printing what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd examples
JC=../.venv/bin/jupyter-containers
echo "== jupyter-containers build demo"
$JC build demo
echo "== jupyter-containers run demo --cpus 1 --memory 512m --pids-limit 256 --network none -- python hello.py"
$JC run demo --cpus 1 --memory 512m --pids-limit 256 --network none -- python hello.py
echo "== jupyter-containers execute demo.ipynb --env demo -p size 300 -o demo.out.ipynb --cpus 1 --memory 512m"
$JC execute demo.ipynb --env demo -p size 300 -o demo.out.ipynb --cpus 1 --memory 512m
echo "the output notebook (outputs made in the container, environment in its metadata): $(pwd)/demo.out.ipynb"
