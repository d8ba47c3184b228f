# Sourced by run.sh and test.sh.

# build_inputs_hash PYTHON: a hash of what an install of fchannel is built
# from (the Python version, pyproject.toml, setup.py, the .pyx/.pxd sources and
# the .py modules Cython compiles: those with an augmenting .pxd beside them).
# The install is editable, so other changes need no reinstall.
build_inputs_hash() {
    { "$1" -c 'import sys; print(sys.version)'
      cat pyproject.toml setup.py
      find fchannel/ \( -name '*.pyx' -o -name '*.pxd' \) | LC_ALL=C sort | while read -r f; do
          cat "$f"
          case $f in *.pxd) [ ! -f "${f%.pxd}.py" ] || cat "${f%.pxd}.py" ;; esac
      done; } | sha256sum | cut -d' ' -f1
}

# The stamp run.sh compares with build_inputs_hash to skip its install.
RUN_STAMP=.venv/.fchannel-install-stamp
