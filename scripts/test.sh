#!/usr/bin/env bash
# The whole test suite, on a real Docker engine: set-up first (see setup.sh), then pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
