# Sourced by run.sh and test.sh.

# build_inputs_hash PYTHON: a hash of what an install of fchannel is built
# from (the Python version, the .pyx/.pxd sources, pyproject.toml, setup.py).
# The install is editable, so other changes need no reinstall.
build_inputs_hash() {
    { "$1" -c 'import sys; print(sys.version)'
      find fchannel/ -name '*.pyx' -o -name '*.pxd' | LC_ALL=C sort | xargs cat
      cat pyproject.toml setup.py; } | sha256sum | cut -d' ' -f1
}

# The stamp run.sh compares with build_inputs_hash to skip its install.
RUN_STAMP=.venv/.fchannel-install-stamp
