# Shared by bin/* scripts: a Python 3.11 virtualenv in .venv with the pinned dependencies.
# Usage: source bin/_env.sh <requirements file>
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

# Install Debian packages that are missing (apt-get update once per run).
_APT_UPDATED=0
ensure_deb() {  # ensure_deb <command-or-path> <package...>
  local probe="$1"; shift
  if [ -e "$probe" ] || command -v "$probe" >/dev/null 2>&1; then return 0; fi
  if ! command -v apt-get >/dev/null; then echo "missing $probe; install: $*" >&2; return 1; fi
  if [ "$_APT_UPDATED" = 0 ]; then as_root apt-get update -qq; _APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {  # ensure_venv <requirements file>
  local req="$1"
  local py="${PYTHON:-}"
  if [ -z "$py" ]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        py="$candidate"; break
      fi
    done
  fi
  [ -n "$py" ] || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  # Reinstall only when the pinned files change.
  local stamp=".venv/.installed-$(basename "$req")"
  local digest
  digest="$(cat requirements*.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -r "$req"
    echo "$digest" > "$stamp"
  fi
}
