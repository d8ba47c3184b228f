import os
import subprocess
import sys

import pytest

import fchannel


def test_public_api_is_pinned():
    assert sorted(fchannel.__all__) == [
        "COMPILED", "ChannelClosedError", "ChannelError", "ChannelFullError",
        "ChannelLockedError", "ConfigError", "CorruptionError", "Event",
        "FileChannel", "MemoryChannel", "Transaction", "TransactionError", "__version__",
    ]
    for name in fchannel.__all__:
        assert hasattr(fchannel, name), name


def test_errors_form_one_hierarchy():
    for name in ("ChannelFullError", "ChannelClosedError", "ChannelLockedError",
                 "TransactionError", "CorruptionError", "ConfigError"):
        assert issubclass(getattr(fchannel, name), fchannel.ChannelError)
    assert issubclass(fchannel.ConfigError, ValueError)


@pytest.mark.skipif(bool(os.environ.get("FCHANNEL_NO_EXTENSIONS")),
                    reason="this run uses the pure twins on purpose")
def test_normal_install_loads_compiled_modules():
    assert fchannel.COMPILED is True
    from fchannel import _compat
    for mod in (_compat.event, _compat.codec, _compat.queue):
        assert mod.__file__.endswith((".so", ".pyd")), mod


def _run(code, *flags, **env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("FCHANNEL_NO_EXTENSIONS", "FCHANNEL_REQUIRE_EXTENSIONS")}
    full.update(env)
    return subprocess.run([sys.executable, *flags, "-c", code], env=full, capture_output=True,
                          text=True, timeout=60)


def test_no_extensions_switch_selects_the_pure_twins():
    r = _run("import fchannel; print(fchannel.COMPILED, fchannel.Event.__module__)",
             FCHANNEL_NO_EXTENSIONS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "fchannel._event_py"]


def test_require_extensions_fails_loudly_when_compiled_modules_are_missing(tmp_path):
    # a copy of the package without its compiled modules
    import shutil
    src = os.path.dirname(fchannel.__file__)
    dst = tmp_path / "fchannel"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    # -S: no site-packages, so the installed package cannot shadow the copy
    # (site-packages is added back by hand, without running its .pth files)
    import site
    code = ("import sys; sys.path.insert(0, %r); sys.path.extend(%r); import fchannel"
            % (str(tmp_path), site.getsitepackages()))
    r = _run(code, "-S", FCHANNEL_REQUIRE_EXTENSIONS="1")
    assert r.returncode != 0
    assert "FCHANNEL_REQUIRE_EXTENSIONS" in r.stderr
    # without the switch it falls back to the twins
    r = _run(code + "; print(fchannel.COMPILED)", "-S")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_integrations_package_is_installed_under_fchannel():
    import fchannel.integrations as integ
    assert integ.__name__ == "fchannel.integrations"


def test_cli_version_and_help():
    r = subprocess.run([sys.executable, "-m", "fchannel", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    assert fchannel.__version__ in r.stdout
    r = subprocess.run([sys.executable, "-m", "fchannel", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "usage: fchannel" in r.stdout
