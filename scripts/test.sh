#!/usr/bin/env bash
# The test command: set up (system packages + .venv), then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check docsync_cli docsync_sandbox tests bench
.venv/bin/mypy
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then   # pytest: no tests collected — that is a failure for us, not a pass
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
