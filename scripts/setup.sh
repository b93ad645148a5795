#!/usr/bin/env bash
# Sets up everything docsync needs on a Debian machine: system packages (renderers, redis for the
# multi-host tests, systemd-analyze) and a virtualenv in .venv with docsync and its test tools.
# Idempotent: run it again any time. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-pip      # Python 3.11 on Debian 12
  poppler-utils                         # pdftoppm: the naive pdf2image baseline in bench/
  libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui  # Office → PDF previews
  python3-uno                           # the warm LibreOffice bridge runs under Debian's python3
  fonts-dejavu-core                     # text previews and LibreOffice's fallback font
  redis-server                          # multi-host lock tests (a real redis-server on loopback)
  systemd                               # systemd-analyze verify for the unit files
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup: Python 3.11 not found (set PYTHON=/path/to/python3.11)" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml changed (or docsync is not installed): an editable install picks up code
# changes by itself, and a reinstall costs time and prints setuptools' "editable installation" notice each run.
stamp=.venv/.docsync-setup-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -m pip show -q docsync-espocrm >/dev/null 2>&1; then
  # the distribution was called "docsync" before (a name PyPI gives to another project): drop that install
  .venv/bin/python -m pip uninstall -q -y docsync >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv/bin/docsync)"
