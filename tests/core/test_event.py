import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import event_modules


def test_body_any_bytes_like_is_stored_as_bytes(core_impl):
    E = core_impl.Event
    for body in (b"abc", bytearray(b"abc"), memoryview(b"abc")):
        e = E(body)
        assert type(e.body) is bytes and e.body == b"abc"
    assert E().body == b""


def test_headers_are_copied(core_impl):
    h = {"a": "1"}
    e = core_impl.Event(b"x", h)
    h["a"] = "2"
    assert e.headers == {"a": "1"}
    assert core_impl.Event(b"x").headers == {}


@pytest.mark.parametrize("headers,needle", [
    ({1: "v"}, "1"), ({"k": 2}, "'k'"), ({"k": None}, "'k'"), ({b"k": "v"}, "b'k'"),
])
def test_non_str_header_names_the_key(core_impl, headers, needle):
    with pytest.raises(TypeError) as ei:
        core_impl.Event(b"x", headers)
    assert needle in str(ei.value)


def test_bad_body_and_headers_types(core_impl):
    with pytest.raises(TypeError, match="str"):
        core_impl.Event("text")
    with pytest.raises(TypeError, match="int"):
        core_impl.Event(12)
    with pytest.raises(TypeError, match="mapping"):
        core_impl.Event(b"x", 5)


def test_equality_by_value_and_unhashable(core_impl):
    E = core_impl.Event
    assert E(b"a", {"k": "v"}) == E(bytearray(b"a"), {"k": "v"})
    assert E(b"a") != E(b"b")
    assert E(b"a", {"k": "v"}) != E(b"a", {"k": "w"})
    assert E(b"a") != b"a"
    with pytest.raises(TypeError):
        hash(E(b"a"))


def test_repr_is_short_for_big_bodies(core_impl):
    e = core_impl.Event(b"z" * 1_000_000, {"host": "h1"})
    r = repr(e)
    assert len(r) < 200
    assert "1000000 bytes" in r and "'host': 'h1'" in r


def test_setters_validate(core_impl):
    e = core_impl.Event(b"a")
    e.body = bytearray(b"new")
    assert e.body == b"new"
    e.headers = {"x": "y"}
    assert e.headers == {"x": "y"}
    with pytest.raises(TypeError):
        e.headers = {"x": 1}
    with pytest.raises(TypeError):
        e.body = "s"


def test_pickle_roundtrip(core_impl):
    e = core_impl.Event(b"\x00\xff", {"k": "v"})
    assert pickle.loads(pickle.dumps(e)) == e


@given(body=st.binary(max_size=64),
       headers=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4))
def test_compiled_and_pure_agree(body, headers):
    mods = event_modules()
    if len(mods) < 2:
        pytest.skip("this run uses the pure forms on purpose")

    def outcome(mod):   # headers may hold lone surrogates: both must refuse alike
        try:
            e = mod.Event(body, headers)
        except ValueError as exc:
            return ("refused", str(exc))
        return (e.body, e.headers, repr(e))

    assert outcome(mods[0]) == outcome(mods[1])


def test_header_text_that_utf8_cannot_hold_is_refused_naming_it(core_impl):
    with pytest.raises(ValueError, match="'k'.*UTF-8"):
        core_impl.Event(b"x", {"k": "bad \ud800"})
    e = core_impl.Event(b"x")
    with pytest.raises(ValueError, match="'\\\\udc80'"):
        e.headers = {"\udc80": "v"}
