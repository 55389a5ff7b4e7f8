#!/usr/bin/env bash
# Set up feedbot and run it on embedded defaults: a SQLite file in ./data, the example dumps
# ingested, then the Telegram bot (when TELEGRAM_BOT_TOKEN is set) or else the console chat.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/feedbot db upgrade
.venv/bin/feedbot ingest examples/dumps
.venv/bin/feedbot status
if [ -n "${TELEGRAM_BOT_TOKEN:-}" ]; then
  exec .venv/bin/feedbot worker
fi
exec .venv/bin/feedbot chat
