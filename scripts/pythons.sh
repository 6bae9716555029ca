# Sourced by the release scripts. SUPPORTED_PYTHONS lists the CPython versions we ship wheels
# for; python_for 3.12 prints the newest pyenv CPython 3.12.x, else the manylinux image's
# /opt/python/cp312-cp312/bin/python, else python3.12 on PATH, else nothing.
SUPPORTED_PYTHONS="3.9 3.10 3.11 3.12 3.13"

python_for() {
    local root v
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    v=$(ls "$root/versions" 2>/dev/null | grep -E "^$1\.[0-9]+$" | sort -V | tail -n 1)
    local tag="cp${1/./}-cp${1/./}"
    if [ -n "$v" ]; then
        echo "$root/versions/$v/bin/python"
    elif [ -x "/opt/python/$tag/bin/python" ]; then
        echo "/opt/python/$tag/bin/python"
    else
        command -v "python$1" || true
    fi
}
