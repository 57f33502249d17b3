#!/usr/bin/env bash
# Prepare this checkout on a fresh machine: a virtualenv with the package (and its test extras),
# a Docker engine that answers (started, or installed on Debian as root, when none does) and a base
# image (pulled, or bootstrapped offline from Debian packages when no registry answers).
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import jupyter_containers, pytest" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
    echo "setup: installing jupyter-containers (editable) and its test extras into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
    touch .venv/.installed
fi
.venv/bin/jupyter-containers setup
