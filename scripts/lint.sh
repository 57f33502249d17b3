#!/usr/bin/env bash
# Lint and type-check the whole tree: ruff (lint + format) on Python and notebooks, mypy on the package,
# eslint + prettier on the JupyterLab extension. Run by scripts/test.sh (the README's test command) before
# the tests; by hand: `bash scripts/lint.sh` (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
started=$SECONDS
echo "lint: ruff check"
ruff check .
echo "lint: ruff format --check"
ruff format --check .
echo "lint: mypy"
mypy
echo "lint: eslint + prettier (labextension/)"
(cd labextension && jlpm lint:check)
echo "lint: all clean in $((SECONDS - started)) s"
