#!/usr/bin/env bash
# Install what benchmarks/run.py drives: wrk, nginx-light (+ echo module for the nginx
# sleep row), libuv1 (for socketify), taskset, a C compiler (run.py builds wsbench.c,
# ssebench.c, uploadbench.c and ceiling.c with cc -O2), and the Python peers (with
# streaming-form-data for the upload-form scenario).
# Usage: bash benchmarks/setup.sh      (PYTHON=/path/to/python to pick the interpreter)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends wrk nginx-light libuv1 util-linux gcc libc6-dev
# Optional: echo_sleep for the nginx row of the sleep scenario (the row shows "skipped" without it).
$SUDO apt-get install -y --no-install-recommends libnginx-mod-http-echo \
  || echo "setup.sh: libnginx-mod-http-echo not available; nginx will skip the sleep scenario" >&2

"$PYTHON" -m pip install -r "$HERE/requirements.txt"

# mummyx itself is not installed here: build/install it from the repo root with
#   "$PYTHON" -m pip install -e .
# run.py benchmarks it whenever `import mummyx` works.
