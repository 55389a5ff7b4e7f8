#!/usr/bin/env bash
# Set up feedbot and run it on embedded defaults: a SQLite file in ./data, the example dumps
# ingested, then the bot (with TELEGRAM_BOT_TOKEN set) or else feedbot's status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/feedbot db upgrade
.venv/bin/feedbot ingest examples/dumps
.venv/bin/feedbot status
