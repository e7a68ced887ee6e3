#!/usr/bin/env bash
# Prints "<interpreter> <X.Y> <lock file>" for `make setup`.
#
# The interpreter is $1 when given (a name on PATH or a path), else the newest python3.X, X from 13
# down to 11 (the versions the lock files are tested on), that runs here. A pyenv shim of a version
# that is installed but not selected is resolved through pyenv. The lock file follows the version:
# requirements-py3.11.lock for 3.11 (JAX 0.10.2), requirements-py3.12.lock for 3.12 and newer.
set -euo pipefail

# The absolute path of the interpreter that `$1` starts, if it runs and is Python >= 3.11.
resolve() {
  "$1" -c 'import sys; assert sys.version_info >= (3, 11); print(sys.executable)' 2>/dev/null
}

# `$1` (a command name or path), or the same command of an installed pyenv version that is not selected.
find_python() {
  local name=$1 version
  if resolve "$name"; then return 0; fi
  if [[ $name != */* ]] && command -v pyenv >/dev/null 2>&1; then
    for version in $(pyenv whence "$name" 2>/dev/null | sort -rV); do
      if resolve "$(pyenv prefix "$version")/bin/$name"; then return 0; fi
    done
  fi
  return 1
}

if [[ $# -gt 0 && -n $1 ]]; then
  if ! exe=$(find_python "$1"); then
    echo "error: PYTHON=$1 does not run here, or is older than Python 3.11 (JAX 0.10.2 needs 3.11)" >&2
    exit 2
  fi
else
  exe=""
  for minor in 13 12 11; do
    if exe=$(find_python "python3.$minor"); then break; fi
  done
  if [[ -z $exe ]]; then
    echo "error: no python3.13, python3.12 or python3.11 runs here; give one as PYTHON=/path/to/python3" >&2
    exit 2
  fi
fi

version=$("$exe" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ ${version#3.} -ge 12 ]]; then lock=requirements-py3.12.lock; else lock=requirements-py3.11.lock; fi
echo "$exe $version $lock"
