# Shared by bin/* and .ci/* scripts: a Python 3.11 virtualenv in .venv with the locked dependencies.
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

python311() {  # print a Python 3.11 interpreter (PYTHON=... wins)
  local py="${PYTHON:-}" candidate
  if [ -z "$py" ]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        py="$candidate"; break
      fi
    done
  fi
  [ -n "$py" ] || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; return 1; }
  echo "$py"
}

# Install a lock (requirements.txt or requirements-dev.txt, compiled by pip-compile with hashes)
# into a virtualenv, in pip's hash-checking mode: every file pip downloads must match a hash in
# the lock, and a line without hashes is an error. pip itself first, at the version and hashes
# that requirements-dev.txt locks (an unpinned "pip install --upgrade pip" would be the one
# download nobody checked, and would change under the lock).
venv_install() {  # venv_install <virtualenv dir> <requirements file>
  local venv="$1" req="$2" pipreq
  pipreq="$(mktemp)"
  sed -n '/^pip==/,/^[^ ]/p' "$ROOT/requirements-dev.txt" | grep -E '^(pip==| +--hash=)' >"$pipreq"
  _pip "$venv" install -q --require-hashes -r "$pipreq"
  rm -f "$pipreq"
  _pip "$venv" install -q --require-hashes -r "$req"
}
# pip, without its warning for every package that an extra index of the machine's pip
# configuration does not have ("Location ... is ignored"); pip's exit status is kept.
_pip() {  # _pip <virtualenv dir> <pip arguments...>
  local venv="$1"; shift
  "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
}

ensure_venv() {  # ensure_venv <requirements file>
  local req="$1" py
  py="$(python311)" || exit 1
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  # Reinstall only when the locked files change.
  local stamp=".venv/.installed-$(basename "$req")"
  local digest
  digest="$(cat requirements*.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    venv_install .venv "$req"
    echo "$digest" > "$stamp"
  fi
}
