#!/usr/bin/env bash
# Install everything (scripts/setup.sh) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -n "${ZOO_TEST_WORKERS:-2}" --dist loadfile "$@"
