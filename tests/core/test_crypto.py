"""Encryption at rest, the building blocks (fchannel.file.crypto): settings,
key files, sealing and opening with AES-GCM, Flume's ``encryption.*``
properties, ``fchannel keygen`` and ``--key`` for the tools."""
from __future__ import annotations

import base64
import itertools
import logging
import os
import stat
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fchannel.cli import main as cli_main
from fchannel.errors import (
    ChannelError,
    ConfigError,
    CorruptionError,
    DecryptionError,
    KeyMissingError,
)
from fchannel.file import config as cfg
from fchannel.file import crypto
from fchannel.file.crypto import (
    EncryptionSettings,
    Sealer,
    encryption_settings,
    key_alias,
    read_key_file,
    write_key_file,
)

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
AAD = b"log-3@4096"


def _key_file(path, key: bytes = K1, form: str = "hex", mode: int = 0o600) -> str:
    data = {"hex": key.hex().encode() + b"\n", "raw": key,
            "b64": base64.b64encode(key) + b"\n"}[form]
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return str(path)


# ---- sealing --------------------------------------------------------------------------

def test_round_trip_and_layout():
    s = Sealer({"k1": K1}, "k1")
    for plain in (b"", b"x", os.urandom(256), os.urandom(70_000)):
        sealed = s.seal(plain, AAD)
        # u8 alias_len | alias | 12-byte nonce | ciphertext + 16-byte tag
        assert sealed[0] == 2 and sealed[1:3] == b"k1"
        assert len(sealed) == len(plain) + crypto.overhead("k1") == len(plain) + 31
        if len(plain) >= 16:   # a shorter plaintext can turn up in random bytes by chance
            assert plain not in sealed
        assert s.open(sealed, AAD, "log-1 at 10") == plain
        assert s.open(memoryview(sealed), AAD, "log-1 at 10") == plain
        assert s.open(bytearray(sealed), AAD, "log-1 at 10") == plain
        assert key_alias(sealed) == "k1"
        assert key_alias(memoryview(sealed)) == "k1"


def test_open_a_memoryview_slice_of_a_larger_buffer():
    s = Sealer({"k1": K1}, "k1")
    sealed = s.seal(b"payload", AAD)
    buf = b"\0" * 7 + sealed + b"\xff" * 5
    assert s.open(memoryview(buf)[7:7 + len(sealed)], AAD, "here") == b"payload"


def test_aad_is_bound_to_the_tag():
    s = Sealer({"k1": K1}, "k1")
    sealed = s.seal(b"event", AAD)
    with pytest.raises(DecryptionError):
        s.open(sealed, b"log-3@8192", "log-3 at 8192")


def test_non_ascii_alias_round_trips():
    alias = "clé-2026"
    s = Sealer({alias: K1}, alias)
    sealed = s.seal(b"e", b"")
    assert sealed[0] == len(alias.encode()) and key_alias(sealed) == alias
    assert s.open(sealed, b"", "w") == b"e"


def _nonce(sealed: bytes) -> bytes:
    start = 1 + sealed[0]
    return sealed[start:start + crypto.NONCE_SIZE]


@pytest.mark.parametrize("locked", [False, True], ids=["gil", "free-threaded"])
def test_nonces_unique_across_threads(locked):
    s = Sealer({"k1": K1}, "k1")
    s._locked = locked   # the path a free-threaded interpreter takes
    per_thread = 2000
    out: list[list[bytes]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(i: int) -> None:
        start.wait()
        for _ in range(per_thread):
            out[i].append(_nonce(s.seal(b"x", b"")))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    nonces = [n for lst in out for n in lst]
    assert len(nonces) == 8 * per_thread
    assert len(set(nonces)) == len(nonces)
    # one random prefix per Sealer, and the counter covers 0..N-1 exactly once
    assert {n[:8] for n in nonces} == {nonces[0][:8]}
    assert sorted(int.from_bytes(n[8:], "big") for n in nonces) == list(range(8 * per_thread))


def test_nonces_unique_across_sealers_of_one_key():
    sealers = [Sealer({"k1": K1}, "k1") for _ in range(50)]
    nonces = [_nonce(s.seal(b"x", b"")) for s in sealers for _ in range(20)]
    assert len(set(nonces)) == len(nonces)
    assert len({n[:8] for n in nonces}) == 50   # each Sealer drew its own prefix


@pytest.mark.parametrize("locked", [False, True], ids=["gil", "free-threaded"])
def test_counter_wrap_draws_a_fresh_prefix(locked):
    s = Sealer({"k1": K1}, "k1")
    s._locked = locked
    first = _nonce(s.seal(b"x", b""))
    s._nonces = (s._nonces[0], itertools.count(0xFFFFFFFF))   # the last value of this prefix
    last = _nonce(s.seal(b"x", b""))
    assert last[:8] == first[:8] and last[8:] == b"\xff\xff\xff\xff"
    wrapped = _nonce(s.seal(b"x", b""))
    assert wrapped[8:] == b"\0\0\0\0" and wrapped[:8] != first[:8]
    assert _nonce(s.seal(b"x", b"")) == wrapped[:8] + b"\0\0\0\1"
    assert s.open(s.seal(b"after", b""), b"", "w") == b"after"


@pytest.mark.parametrize("locked", [False, True], ids=["gil", "free-threaded"])
def test_nonces_unique_when_threads_cross_the_wrap(locked):
    s = Sealer({"k1": K1}, "k1")
    s._locked = locked
    s._nonces = (s._nonces[0], itertools.count(0xFFFFFFFF - 300))
    out: list[list[bytes]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def work(i: int) -> None:
        start.wait()
        for _ in range(500):
            out[i].append(_nonce(s.seal(b"x", b"")))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    nonces = [n for lst in out for n in lst]
    assert len(nonces) == 2000 and len(set(nonces)) == 2000
    assert len({n[:8] for n in nonces}) == 2   # the first prefix, then one fresh one


def test_rotation_old_and_new_keys_read():
    old = Sealer({"k1": K1}, "k1")
    written_old = old.seal(b"old event", AAD)
    ring = Sealer({"k1": K1, "k2": K2}, "k2")
    written_new = ring.seal(b"new event", AAD)
    assert key_alias(written_new) == "k2"
    assert ring.open(written_old, AAD, "w") == b"old event"
    assert ring.open(written_new, AAD, "w") == b"new event"
    # a reader with both keys and no active key (the tools)
    reader = Sealer.for_reading({"k1": K1, "k2": K2})
    assert reader.open(written_old, AAD, "w") == b"old event"
    assert reader.open(written_new, AAD, "w") == b"new event"
    with pytest.raises(ConfigError, match="no active key"):
        reader.seal(b"x", AAD)


def test_wrong_key_is_a_decryption_error_naming_alias_and_place():
    sealed = Sealer({"k1": K1}, "k1").seal(b"secret", AAD)
    other = Sealer({"k1": K2}, "k1")
    with pytest.raises(DecryptionError) as err:
        other.open(sealed, AAD, "log-7 at offset 4096")
    msg = str(err.value)
    assert "'k1'" in msg and "log-7 at offset 4096" in msg and "differs" in msg
    assert isinstance(err.value, ChannelError) and not isinstance(err.value, ConfigError)


def test_unknown_alias_is_key_missing_naming_the_setting():
    sealed = Sealer({"old": K1}, "old").seal(b"secret", AAD)
    ring = Sealer({"new": K2}, "new")
    with pytest.raises(KeyMissingError) as err:
        ring.open(sealed, AAD, "log-2 at 77")
    msg = str(err.value)
    assert "'old'" in msg and "log-2 at 77" in msg
    assert "encryption.keyProvider.keys.old.keyFile" in msg
    assert isinstance(err.value, ConfigError)


@pytest.mark.parametrize("sealed, why", [
    (b"", "empty"),
    (b"\0" + b"x" * 40, "empty key alias"),
    (b"\x02k1" + b"n" * 12 + b"t" * 15, "too short"),     # one byte short of a tag
    (b"\xffabc", "too short"),
    (b"\x02\xff\xfe" + b"n" * 12 + b"t" * 16, "not UTF-8"),
])
def test_malformed_prefix_is_corruption_naming_where(sealed, why):
    s = Sealer.for_reading({"k1": K1})
    with pytest.raises(CorruptionError, match=why) as err:
        s.open(sealed, AAD, "log-9 at 123")
    assert "log-9 at 123" in str(err.value)
    with pytest.raises(CorruptionError, match=why):
        key_alias(sealed)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=32))
def test_open_arbitrary_bytes_raises_only_the_three_errors(data, aad):
    ring = Sealer({"k1": K1, "é": K2}, "k1")
    valid = ring.seal(data, aad)
    flipped = bytearray(valid)
    flipped[len(data) % len(valid)] ^= 0x5A
    for candidate in (data, b"\x02k1" + data, "é".encode().join([b"\x02", data]),
                      bytes(flipped)):
        doubled = bytes(b for b in candidate for _ in (0, 1))
        for form in (candidate, memoryview(candidate), bytearray(candidate),
                     memoryview(doubled)[::2]):          # a strided view
            try:
                ring.open(form, aad, "fuzz")
            except (CorruptionError, KeyMissingError, DecryptionError):
                pass
            try:
                key_alias(form)
            except CorruptionError:
                pass
    assert ring.open(memoryview(valid), aad, "fuzz") == data
    with pytest.raises((CorruptionError, KeyMissingError, DecryptionError)):
        ring.open(bytes(flipped), aad, "fuzz")     # one changed byte never opens


def test_sealer_rejects_bad_keys_and_active():
    with pytest.raises(ConfigError, match=r"key 'k1' must be 16, 24 or 32 bytes, got 31"):
        Sealer({"k1": K1[:31]}, "k1")
    with pytest.raises(ConfigError, match=r"active key 'k2' is not one of the keys \('k1'\)"):
        Sealer({"k1": K1}, "k2")
    with pytest.raises(ConfigError, match="whitespace or commas"):
        Sealer.for_reading({"a b": K1})
    for size in (16, 24, 32):
        s = Sealer({"k": K1[:size]}, "k")
        assert s.open(s.seal(b"x", b""), b"", "w") == b"x"


# ---- settings ---------------------------------------------------------------------------

def test_encryption_settings_accepts_mapping_and_dataclass(tmp_path):
    assert encryption_settings(None) is None
    s = encryption_settings({"active_key": "k2", "keys": {"k1": "a.key", "k2": str(tmp_path)},
                             "cipher_provider": "aesgcm"})
    assert s == EncryptionSettings(active_key="k2",
                                   keys={"k1": os.path.abspath("a.key"), "k2": str(tmp_path)},
                                   cipher_provider="AESGCM", key_provider="KEYFILE")
    assert encryption_settings(s) == s


@pytest.mark.parametrize("value, names", [
    ("k1", ["encryption must be", "'k1'"]),
    ({"keys": {"k1": "/k"}}, ["encryption['active_key'] is missing"]),
    ({"active_key": "k1"}, ["encryption['keys'] is missing"]),
    ({"active_key": "k1", "keys": {}}, ["encryption['keys']", "{}"]),
    ({"active_key": "k1", "keys": ["k1"]}, ["encryption['keys']", "['k1']"]),
    ({"active_key": "k3", "keys": {"k1": "/k"}},
     ["encryption['active_key']", "'k3'", "not one of the keys", "'k1'"]),
    ({"active_key": "", "keys": {"k1": "/k"}}, ["encryption['active_key']", "''"]),
    ({"active_key": "k1", "keys": {"k1": b"/k"}}, ["encryption['keys']['k1']", "b'/k'"]),
    ({"active_key": "k1", "keys": {"k1": 7}}, ["encryption['keys']['k1']", "7"]),
    ({"active_key": "k1", "keys": {"k1": "/k", "a,b": "/k"}},
     ["encryption['keys'] alias", "'a,b'", "commas"]),
    ({"active_key": "k1", "keys": {"k1": "/k", "a b": "/k"}}, ["'a b'", "whitespace"]),
    ({"active_key": "k1", "keys": {"k1": "/k", "x" * 256: "/k"}},
     ["at most 255 bytes", "got 256 bytes"]),
    ({"active_key": "k1", "keys": {"k1": "/k", 5: "/k"}}, ["encryption['keys'] alias", "5"]),
    ({"active_key": "k1", "keys": {"k1": "/k"}, "cipher_provider": "AESCTR"},
     ["encryption['cipher_provider']", "'AESCTR'", "AESGCM"]),
    ({"active_key": "k1", "keys": {"k1": "/k"}, "key_provider": "JCEKSFILE"},
     ["encryption['key_provider']", "'JCEKSFILE'", "KEYFILE"]),
    ({"active_key": "k1", "keys": {"k1": "/k"}, "activeKey": "k1"},
     ["unknown field", "'activeKey'"]),
])
def test_encryption_settings_errors_name_field_and_value(value, names):
    with pytest.raises(ConfigError) as err:
        encryption_settings(value)
    for n in names:
        assert n in str(err.value), (n, str(err.value))


def test_validate_carries_encryption(tmp_path):
    args = (str(tmp_path / "ck"), [str(tmp_path / "d")], 100, 10, 30.0, 1 << 20, 0, 1.0,
            None, True, 1.0, True, False, "c1")
    assert cfg.validate(*args).encryption is None
    s = cfg.validate(*args, {"active_key": "k1", "keys": {"k1": "k.key"}})
    assert s.encryption == EncryptionSettings("k1", {"k1": os.path.abspath("k.key")})
    with pytest.raises(ConfigError, match="encryption"):
        cfg.validate(*args, encryption={"active_key": "nope", "keys": {"k1": "k.key"}})


def test_missing_cryptography_is_one_line_naming_the_extra(monkeypatch):
    for mod in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "cryptography", None)   # import fails
    with pytest.raises(ConfigError) as err:
        encryption_settings({"active_key": "k1", "keys": {"k1": "/k"}})
    msg = str(err.value)
    assert "encryption needs `pip install 'fchannel[encryption]'`" in msg
    assert "\n" not in msg


# ---- key files ---------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["hex", "raw", "b64"])
@pytest.mark.parametrize("size", [16, 24, 32])
def test_key_file_forms(tmp_path, form, size):
    key = os.urandom(size)
    path = _key_file(tmp_path / "k", key, form)
    assert read_key_file(path, "k1") == key


def test_key_file_text_without_newline_and_crlf(tmp_path):
    p = tmp_path / "k"
    p.write_bytes(K1.hex().upper().encode())
    assert read_key_file(str(p)) == K1
    p.write_bytes(base64.b64encode(K2) + b"\r\n")
    assert read_key_file(str(p)) == K2


@pytest.mark.parametrize("content, why", [
    (b"", "0 bytes"),
    (b"abc\n", "4 bytes"),
    (b"\0" * 31, "31 bytes"),
    (b"0" * 63 + b"\n", "64 bytes"),
    (b"x" * 5000, "more than 4096 bytes"),
])
def test_key_file_wrong_length_names_alias_file_and_problem(tmp_path, content, why):
    p = tmp_path / "bad.key"
    p.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        read_key_file(str(p), "k1", "encryption.keyProvider.keys.k1.keyFile")
    msg = str(err.value)
    for part in ("'k1'", str(p), "holds no AES key", why,
                 "encryption.keyProvider.keys.k1.keyFile", "fchannel keygen"):
        assert part in msg, (part, msg)


def test_key_file_missing_directory_and_unreadable(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'k1' file '.*nope\.key'.* does not exist"):
        read_key_file(str(tmp_path / "nope.key"), "k1")
    with pytest.raises(ConfigError, match="is a directory"):
        read_key_file(str(tmp_path), "k1")
    if os.geteuid() != 0:   # root reads any file
        p = _key_file(tmp_path / "locked", mode=0)
        with pytest.raises(ConfigError, match="cannot be read"):
            read_key_file(p, "k1")


def test_group_readable_key_file_warns_once(tmp_path, caplog):
    p = _key_file(tmp_path / "open.key", mode=0o644)
    with caplog.at_level(logging.WARNING, logger="fchannel.file"):
        assert read_key_file(p, "k1") == K1
        assert read_key_file(p, "k1") == K1
    warned = [r for r in caplog.records if "group or others" in r.getMessage()]
    assert len(warned) == 1 and p in warned[0].getMessage()
    assert "0o644" in warned[0].getMessage()
    caplog.clear()
    q = _key_file(tmp_path / "closed.key", mode=0o600)
    with caplog.at_level(logging.WARNING, logger="fchannel.file"):
        read_key_file(q, "k2")
    assert not caplog.records


def test_from_settings_reads_every_key_and_names_the_channel(tmp_path):
    s = EncryptionSettings("k2", {"k1": _key_file(tmp_path / "1", K1),
                                  "k2": _key_file(tmp_path / "2", K2, "raw")})
    sealer = Sealer.from_settings(s, "c1")
    assert sorted(sealer.aliases) == ["k1", "k2"] and sealer.active == "k2"
    assert Sealer({"k2": K2}, "k2").open(sealer.seal(b"e", b""), b"", "w") == b"e"
    broken = EncryptionSettings("k1", {"k1": str(tmp_path / "1"),
                                       "k2": str(tmp_path / "missing")})
    with pytest.raises(ConfigError) as err:
        Sealer.from_settings(broken, "c1")
    msg = str(err.value)
    assert "channel 'c1'" in msg and "'k2'" in msg and "missing" in msg
    assert "encryption.keyProvider.keys.k2.keyFile" in msg


def test_write_key_file_mode_and_no_overwrite(tmp_path):
    p = tmp_path / "new.key"
    write_key_file(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    key = read_key_file(str(p))
    assert len(key) == 32
    with pytest.raises(FileExistsError):
        write_key_file(p)
    assert read_key_file(str(p)) == key
    write_key_file(tmp_path / "short.key", 16)
    assert len(read_key_file(str(tmp_path / "short.key"))) == 16


# ---- command line --------------------------------------------------------------------------

def test_keygen_command(tmp_path, capfd):
    p = tmp_path / "k1.key"
    old = os.umask(0)   # the key file is 0600 whatever the umask
    try:
        assert cli_main(["keygen", str(p)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    key = read_key_file(str(p))
    assert cli_main(["keygen", str(p)]) == 1
    assert "exists; not overwritten" in capfd.readouterr().err
    assert read_key_file(str(p)) == key
    assert cli_main(["keygen", "--bits", "128", str(tmp_path / "k2.key")]) == 0
    assert len(read_key_file(str(tmp_path / "k2.key"))) == 16
    # a missing directory is made, private to its owner
    assert cli_main(["keygen", str(tmp_path / "no" / "dir.key")]) == 0
    assert stat.S_IMODE(os.stat(tmp_path / "no").st_mode) == 0o700


def _empty_channel_dirs(tmp_path):
    ck, data = tmp_path / "ck", tmp_path / "data"
    ck.mkdir()
    data.mkdir()
    return str(ck), str(data)


@pytest.mark.parametrize("command", ["inspect", "check"])
@pytest.mark.parametrize("value, expect", [
    ("k1", "--key must be ALIAS=PATH, got 'k1'"),
    ("=x.key", "--key must be ALIAS=PATH, got '=x.key'"),
    ("k1=", "--key must be ALIAS=PATH, got 'k1='"),
    ("a,b=x.key", "'a,b'"),
    ("k1=missing.key", "does not exist"),
])
def test_bad_key_option_exits_2_naming_option_and_value(tmp_path, capfd, command, value,
                                                        expect):
    ck, data = _empty_channel_dirs(tmp_path)
    assert cli_main([command, ck, data, "--key", value]) == 2
    err = capfd.readouterr().err
    assert f"fchannel {command}:" in err and expect in err and "--key" in err


def test_key_option_builds_a_reading_sealer(tmp_path):
    from fchannel import cli
    k1 = _key_file(tmp_path / "1.key", K1)
    k2 = _key_file(tmp_path / "2.key", K2, "b64")
    sealer = cli.sealer_from_key_options([f"k1={k1}", f"k2={k2}"])
    assert sealer.active is None and sorted(sealer.aliases) == ["k1", "k2"]
    assert sealer.open(Sealer({"k2": K2}, "k2").seal(b"e", b""), b"", "w") == b"e"
    assert cli.sealer_from_key_options([]) is None
    with pytest.raises(ConfigError, match="given twice"):
        cli.sealer_from_key_options([f"k1={k1}", f"k1={k2}"])
    # the handler of inspect/check finds it as args.sealer
    seen = []
    parser = cli.build_parser()
    ck, data = _empty_channel_dirs(tmp_path)
    args = parser.parse_args(["inspect", ck, data, "--key", f"k1={k1}", "--key", f"k2={k2}"])
    handler = cli._with_keys(lambda a: seen.append(a.sealer) or 0, "inspect")
    assert handler(args) == 0
    assert sorted(seen[0].aliases) == ["k1", "k2"]



def test_key_option_leaves_a_plain_channel_readable(tmp_path, capfd):
    from fchannel import Event, FileChannel
    ck, data = str(tmp_path / "ck"), str(tmp_path / "data")
    with FileChannel(ck, [data], capacity=100, transaction_capacity=10) as ch, \
            ch.transaction() as tx:
        tx.put(Event(b"plain", {"h": "1"}))
    k1 = _key_file(tmp_path / "1.key", K1)
    capfd.readouterr()
    assert cli_main(["inspect", ck, data, "--key", f"k1={k1}"]) == 0
    assert "queue size 1" in capfd.readouterr().out
    assert cli_main(["check", ck, data, "--key", f"k1={k1}"]) == 0


# ---- Flume's encryption.* properties ---------------------------------------------------------

BASE = {"type": "file", "checkpointDir": "/tmp/ck", "dataDirs": "/tmp/d"}


def _flume(**enc: str) -> dict[str, str]:
    return {**BASE, **{k.replace("__", "."): v for k, v in enc.items()}}


def test_flume_properties_give_the_encryption_argument():
    kw = cfg.kwargs_from_flume({
        **BASE,
        "encryption.activeKey": "key-1",
        "encryption.cipherProvider": "AESGCM",
        "encryption.keyProvider": "KEYFILE",
        "encryption.keyProvider.keys": "key-0 key-1",
        "encryption.keyProvider.keys.key-0.keyFile": "/keys/0.key",
        "encryption.keyProvider.keys.key-1.keyFile": "keys/1.key",
    })
    assert kw["encryption"] == EncryptionSettings(
        "key-1", {"key-0": "/keys/0.key", "key-1": os.path.abspath("keys/1.key")})
    assert kw["checkpoint_dir"] == "/tmp/ck" and kw["data_dirs"] == ["/tmp/d"]
    assert "encryption" not in cfg.kwargs_from_flume(BASE)


def test_flume_keys_list_takes_commas_and_defaults_to_the_key_files():
    kw = cfg.kwargs_from_flume({
        **BASE, "encryption.activeKey": "b",
        "encryption.keyProvider.keys": " a, b ",
        "encryption.keyProvider.keys.a.keyFile": "/a", "encryption.keyProvider.keys.b.keyFile": "/b"})
    assert kw["encryption"].keys == {"a": "/a", "b": "/b"}
    # cipher and key provider are optional, and so is the list of aliases
    kw = cfg.kwargs_from_flume({**BASE, "encryption.activeKey": "a",
                                "encryption.keyProvider.keys.a.keyFile": "/a"})
    assert kw["encryption"] == EncryptionSettings("a", {"a": "/a"})


def test_flume_aesctrnopadding_is_read_as_aesgcm_with_one_warning(caplog, monkeypatch):
    monkeypatch.setattr(cfg, "_warned", set())
    props = {**BASE, "encryption.activeKey": "a", "encryption.cipherProvider": "AESCTRNOPADDING",
             "encryption.keyProvider": "KEYFILE", "encryption.keyProvider.keys": "a",
             "encryption.keyProvider.keys.a.keyFile": "/a"}
    with caplog.at_level(logging.WARNING, logger="fchannel.file"):
        kw = cfg.kwargs_from_flume(props)
        cfg.kwargs_from_flume(props)     # the agent reads its configuration twice
    assert kw["encryption"].cipher_provider == "AESGCM"
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1
    assert "encryption.cipherProvider" in warned[0] and "AESCTRNOPADDING" in warned[0]
    assert "AES-GCM, an authenticated cipher, is used instead" in warned[0]


@pytest.mark.parametrize("extra, names", [
    ({"encryption.keyProvider": "JCEKSFILE"},
     ["encryption.keyProvider", "'JCEKSFILE'", "Java keystores", "KEYFILE",
      "encryption.keyProvider.keys.<alias>.keyFile"]),
    ({"encryption.keyProvider.keyStoreFile": "/ks.jceks"},
     ["encryption.keyProvider.keyStoreFile", "'/ks.jceks'", "KEYFILE", "keyFile"]),
    ({"encryption.keyProvider.keyStorePasswordFile": "/pw"},
     ["encryption.keyProvider.keyStorePasswordFile", "'/pw'", "KEYFILE"]),
    ({"encryption.keyProvider.keys.a.passwordFile": "/pw"},
     ["encryption.keyProvider.keys.a.passwordFile", "'/pw'", "KEYFILE"]),
    ({"encryption.cipherProvider": "DES"}, ["encryption.cipherProvider", "'DES'", "AESGCM"]),
    ({"encryption.keyProvider": "VAULT"}, ["encryption.keyProvider", "'VAULT'", "KEYFILE"]),
    ({"encryption.activeKey": "zz"},
     ["encryption.activeKey = 'zz'", "not one of the keys", "'a'",
      "encryption.keyProvider.keys.zz.keyFile"]),
    ({"encryption.activeKey": "a b"}, ["encryption.activeKey", "'a b'", "whitespace"]),
    ({"encryption.keyProvider.keys": "a b"},
     ["encryption.keyProvider.keys lists key 'b'", "encryption.keyProvider.keys.b.keyFile"]),
    ({"encryption.keyProvider.keys.c.keyFile": "/c"},
     ["encryption.keyProvider.keys.c.keyFile is set", "does not list 'c'"]),
    ({"encryption.keyProvider.keys.a.keyFile": ""},
     ["encryption.keyProvider.keys.a.keyFile", "''"]),
    ({"encryption.activeKy": "a"},
     ["unknown file channel property 'encryption.activeKy'", "'a'",
      "did you mean encryption.activeKey?"]),
    ({"encryption.keyProvider.keys.a.keyfile": "/a"},
     ["'encryption.keyProvider.keys.a.keyfile'",
      "did you mean encryption.keyProvider.keys.a.keyFile?"]),
])
def test_flume_property_errors_name_property_and_value(extra, names):
    props = {**BASE, "encryption.activeKey": "a", "encryption.keyProvider.keys": "a",
             "encryption.keyProvider.keys.a.keyFile": "/a", **extra}
    with pytest.raises(ConfigError) as err:
        cfg.kwargs_from_flume(props)
    for n in names:
        assert n in str(err.value), (n, str(err.value))


def test_flume_encryption_needs_active_key_and_keys():
    with pytest.raises(ConfigError, match="encryption.activeKey is missing"):
        cfg.kwargs_from_flume({**BASE, "encryption.keyProvider.keys.a.keyFile": "/a"})
    with pytest.raises(ConfigError, match="no key is"):
        cfg.kwargs_from_flume({**BASE, "encryption.activeKey": "a"})


def test_flume_problems_reported_together():
    with pytest.raises(ConfigError) as err:
        cfg.kwargs_from_flume({**BASE, "capacity": "lots", "encryption.keyProvider": "JCEKSFILE",
                               "encryption.activeKey": "a",
                               "encryption.keyProvider.keys.a.keyFile": "/a"})
    assert "capacity" in str(err.value) and "JCEKSFILE" in str(err.value)


def test_flume_properties_to_a_working_sealer(tmp_path):
    """From the agent's properties to sealing and opening, with a key made by keygen."""
    assert cli_main(["keygen", str(tmp_path / "k0.key")]) == 0
    assert cli_main(["keygen", str(tmp_path / "k1.key")]) == 0
    kw = cfg.kwargs_from_flume({
        **BASE, "encryption.activeKey": "k1", "encryption.keyProvider": "KEYFILE",
        "encryption.keyProvider.keys": "k0,k1",
        "encryption.keyProvider.keys.k0.keyFile": str(tmp_path / "k0.key"),
        "encryption.keyProvider.keys.k1.keyFile": str(tmp_path / "k1.key")})
    sealer = Sealer.from_settings(kw["encryption"], "c1")
    sealed = sealer.seal(b"event", AAD)
    assert key_alias(sealed) == "k1"
    reader = Sealer.for_reading({"k1": read_key_file(str(tmp_path / "k1.key"))})
    assert reader.open(sealed, AAD, "w") == b"event"
    with pytest.raises(DecryptionError):   # another key file under the same alias
        Sealer.for_reading({"k1": read_key_file(str(tmp_path / "k0.key"))}).open(
            sealed, AAD, "w")
