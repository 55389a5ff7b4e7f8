#!/usr/bin/env bash
# Create .venv and install feedbot into it (with the test tools when given "dev").
# Re-running is fast: pip runs again only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.feedbot-installed${extra:+-$extra}"
current() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
# A dev install includes the plain one, so `setup.sh` after `setup.sh dev` has nothing to do.
if ! current "$stamp" && ! { [ -z "$extra" ] && current .venv/.feedbot-installed-dev; }; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra:+[$extra]}"
  touch "$stamp"
fi
