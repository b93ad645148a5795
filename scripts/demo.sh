#!/usr/bin/env bash
# The demo command: set up, then run `docsync demo` (emulators + a seeded firm + a real sync + the report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/docsync demo "$@"
