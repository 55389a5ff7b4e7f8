#!/usr/bin/env bash
# Set up everything the tests need (venv, packages, a local PostgreSQL) and run the whole suite
# on SQLite and PostgreSQL. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
FEEDBOT_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)
export FEEDBOT_TEST_POSTGRES_URL
.venv/bin/ruff check --output-format concise feedbot tests benchmarks
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
