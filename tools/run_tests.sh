#!/usr/bin/env bash
# The test suite, with its own set-up: builds/updates .venv (tools/setup_env.sh)
# then runs pytest. Extra arguments go to pytest (e.g. -k dlu, -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup_env.sh
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider --durations=20 "$@"
