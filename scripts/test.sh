#!/usr/bin/env bash
# The whole test suite, on a real Docker engine: set-up first (see setup.sh), the linters and type checker
# (lint.sh), then pytest. Extra arguments go to pytest and skip the linters, e.g.
# `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$#" -eq 0 ]; then
    bash scripts/lint.sh
fi
exec .venv/bin/python -m pytest "$@"
