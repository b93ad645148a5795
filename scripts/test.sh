#!/usr/bin/env bash
# The test command: set up (system packages + .venv), then lint, type-check and run the whole test suite.
#
# Where the real-EspoCRM fixture lies beside the clone (../shared/real-espocrm, as in CI), it is started in a
# temporary directory for the suite and stopped at the end, failing or not: tests/real and tests/contract run
# against it (its env.sh: ESPOCRM_URL, ESPOCRM_API_KEY, ESPOCRM_HMAC_API_KEY, ESPOCRM_SECRET_KEY,
# ESPOCRM_ADMIN_USER, ESPOCRM_ADMIN_PASSWORD). Without it they are skipped with one line saying why, unless those
# variables name a CRM of your own (README: "Test against your own EspoCRM before going live").
# Env: REAL_ESPOCRM_FIXTURE (the fixture's folder), REAL_ESPOCRM_PORT / REAL_ESPOCRM_DB_PORT (default: free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

fixture="${REAL_ESPOCRM_FIXTURE:-$(cd .. && pwd)/shared/real-espocrm}"
real_dir="" real_pid=""
stop_real() {
  if [ -n "$real_pid" ]; then wait "$real_pid" 2>/dev/null || true; fi   # never stop it halfway through setup
  if [ -n "$real_dir" ]; then
    bash "$fixture/stop.sh" "$real_dir" >/dev/null 2>&1 || true
    rm -rf "$real_dir"
  fi
}
if [ -f "$fixture/setup.sh" ] && [ -z "${ESPOCRM_ADMIN_USER:-}" ]; then
  free_port() { .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  real_dir="$(mktemp -d "${TMPDIR:-/tmp}/docsync-real-espocrm.XXXXXX")"
  trap stop_real EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  echo "test.sh: starting the real EspoCRM from $fixture in $real_dir"
  ESPOCRM_PORT="${REAL_ESPOCRM_PORT:-$(free_port)}" ESPOCRM_DB_PORT="${REAL_ESPOCRM_DB_PORT:-$(free_port)}" \
    ESPOCRM_FIELD_PREFIX="" ESPOCRM_ROLE_ACCOUNT_READ=all \
    bash "$fixture/setup.sh" "$real_dir" >"$real_dir/setup.log" 2>&1 &   # meanwhile: ruff and mypy
  real_pid=$!
fi

.venv/bin/ruff check docsync_cli docsync_sandbox tests bench
.venv/bin/mypy

if [ -n "$real_pid" ]; then
  if ! wait "$real_pid"; then
    real_pid=""
    echo "test.sh: the real EspoCRM did not start; its log:" >&2
    cat "$real_dir/setup.log" >&2
    exit 1
  fi
  real_pid=""
  set -a
  # shellcheck disable=SC1091
  . "$real_dir/env.sh"
  set +a
  # tests/real changes the instance's metadata; tests/contract makes ids by SQL over its MariaDB socket
  export REAL_ESPOCRM_DIR="$real_dir" REAL_ESPOCRM_FIXTURE="$fixture" DOCSYNC_REAL_ADMIN_SHELL="$real_dir"
fi

set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then   # pytest: no tests collected — that is a failure for us, not a pass
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
