from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptt.errors import ValidationError
from ptt.names import (
    MAX_NAME,
    call_group_name,
    call_members,
    format_hostport,
    group_name,
    is_call_group_name,
    parse_hostport,
    parse_port,
    parse_role,
    role_name,
    user_name,
)
from ptt.protocol.messages import Role

# --- user and group names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("alice", "alice"),
        ("Alice", "alice"),
        ("ALICE.B-C_D", "alice.b-c_d"),
        ("0day", "0day"),
        ("a", "a"),
        ("x" * MAX_NAME, "x" * MAX_NAME),
        ("team-7.north_", "team-7.north_"),
    ],
)
def test_valid_names_fold_to_lower_case(raw: str, canonical: str) -> None:
    assert user_name(raw) == canonical
    assert group_name(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "empty"),
        ("x" * (MAX_NAME + 1), "33 characters, at most 32"),
        ("\u5f20" * (MAX_NAME + 1), "33 characters, at most 32"),  # characters, not bytes
        ("-alice", "starting with a letter or digit"),
        (".hidden", "starting with a letter or digit"),
        ("_x", "starting with a letter or digit"),
        ("al:ice", "U+003A ':' is not allowed"),
        ("al/ice", "U+002F '/' is not allowed"),
        ("al+ice", "U+002B '+' is not allowed"),
        ("call:a+b", "is not allowed"),
        ("alice\n", "control characters are not allowed"),
        ("x\u200dy", "is not allowed"),  # a zero-width joiner outside its context
    ],
)
def test_invalid_names_say_what_is_allowed(raw: str, needle: str) -> None:
    with pytest.raises(ValidationError, match="invalid user name") as err:
        user_name(raw)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ValidationError, match="invalid group name"):
        group_name(raw)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("\u5fd7\u613f\u8005", "\u5fd7\u613f\u8005"),  # 志愿者
        ("\u5f20\u4f1f", "\u5f20\u4f1f"),  # 张伟
        ("Zo\u00eb", "zo\u00eb"),  # Zoë
        ("Zoe\u0308", "zo\u00eb"),  # the same, decomposed: NFC
        ("\uff3a\uff2f\u00cb", "zo\u00eb"),  # ＺＯË, full width: mapped to the usual width
        ("\uff41lice", "alice"),  # a full-width 'a' is not a look-alike of 'alice': it IS alice
        ("\u0391\u03b8\u03ae\u03bd\u03b1", "\u03b1\u03b8\u03ae\u03bd\u03b1"),  # Αθήνα
        ("\u05d0\u05d1", "\u05d0\u05d1"),  # right-to-left alone passes the bidi rule
        ("\u5f20" * MAX_NAME, "\u5f20" * MAX_NAME),  # 32 characters, 96 bytes
    ],
)
def test_names_in_any_script_are_mapped_by_precis(raw: str, canonical: str) -> None:
    assert user_name(raw) == canonical
    assert group_name(raw) == canonical
    assert user_name(canonical) == canonical  # the mapped form is a fixed point


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("north gate", "spaces are not allowed"),
        ("a\u05d0", "bidi rule"),  # left-to-right then right-to-left
        ("\ufb01x", "compatibility form"),  # the 'fi' ligature
        ("\u2168", "compatibility form"),  # Roman numeral nine
    ],
)
def test_user_names_follow_the_username_profile(raw: str, needle: str) -> None:
    with pytest.raises(ValidationError, match="invalid user name") as err:
        user_name(raw)
    assert needle in str(err.value)


def test_group_names_follow_the_nickname_profile() -> None:
    assert group_name("north gate") == "north gate"
    assert group_name("  North   Gate ") == "north gate"
    assert group_name("\u5317\u95e8 2") == "\u5317\u95e8 2"
    with pytest.raises(ValidationError, match="empty"):
        group_name("   ")


def test_non_text_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="expected text"):
        user_name(42)


def test_long_names_are_shortened_in_the_message() -> None:
    with pytest.raises(ValidationError) as err:
        user_name("y" * 500)
    assert len(str(err.value)) < 120


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", fullmatch=True))
def test_canonical_names_are_fixed_points(raw: str) -> None:
    once = user_name(raw)
    assert user_name(once) == once == raw.lower()


@given(st.text(max_size=40))
def test_any_text_is_either_a_group_name_or_a_validation_error(raw: str) -> None:
    try:
        name = group_name(raw)
    except ValidationError:
        return
    assert 1 <= len(name) <= MAX_NAME
    assert group_name(name) == name
    assert ":" not in name and "/" not in name


@given(st.text(max_size=40))
def test_any_text_is_either_a_name_or_a_validation_error(raw: str) -> None:
    try:
        name = user_name(raw)
    except ValidationError:
        return
    assert 1 <= len(name) <= MAX_NAME
    assert user_name(name) == name
    assert ":" not in name and "+" not in name and "/" not in name


# --- call groups -------------------------------------------------------------------------------


def test_call_group_names_are_order_independent_and_reserved() -> None:
    name = call_group_name("Bob", "alice")
    assert name == call_group_name("alice", "bob") == "call:alice+bob"
    assert is_call_group_name(name)
    assert call_members(name) == ("alice", "bob")
    with pytest.raises(ValidationError):
        group_name(name)  # an ordinary group can never take that name


def test_call_group_name_errors() -> None:
    with pytest.raises(ValidationError, match="cannot call yourself"):
        call_group_name("alice", "ALICE")
    for bad in ("call:bob+alice", "call:alice", "alice+bob", "call:a+b+c", "call:Alice+bob"):
        assert not is_call_group_name(bad)


# --- roles -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "role"),
    [
        ("volunteer", Role.VOLUNTEER),
        ("Coordinator", Role.COORDINATOR),
        (" dispatcher ", Role.DISPATCHER),
        (Role.DISPATCHER, Role.DISPATCHER),
    ],
)
def test_parse_role(raw: object, role: Role) -> None:
    assert parse_role(raw) is role
    assert parse_role(role_name(role)) is role


@pytest.mark.parametrize("raw", ["admin", "", "coord", 2, None])
def test_bad_role_lists_the_choices(raw: object) -> None:
    with pytest.raises(ValidationError, match="expected volunteer, coordinator or dispatcher"):
        parse_role(raw)


# --- host:port ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7700", ("127.0.0.1", 7700)),
        ("  10.0.0.5:1 ", ("10.0.0.5", 1)),
        ("[::1]:7700", ("::1", 7700)),
        ("[2001:DB8::0001]:65535", ("2001:db8::1", 65535)),
        ("[fe80::1%eth0]:7700", ("fe80::1%eth0", 7700)),
        ("localhost:7700", ("localhost", 7700)),
        ("PTT.Example.org.:80", ("ptt.example.org", 80)),
        ("a-b.c9:7700", ("a-b.c9", 7700)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


def test_default_port_allows_bare_hosts() -> None:
    assert parse_hostport("example.org", default_port=7700) == ("example.org", 7700)
    assert parse_hostport("192.0.2.1", 7700) == ("192.0.2.1", 7700)
    assert parse_hostport("[::1]", 7700) == ("::1", 7700)
    assert parse_hostport("::1", 7700) == ("::1", 7700)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("example.org", "expected HOST:PORT"),
        ("", "expected HOST:PORT"),
        ("host:", "invalid port"),
        ("host:http", "invalid port"),
        ("host:65536", "invalid port"),
        ("host:0", "invalid port"),
        ("host:-1", "invalid port"),
        ("::1:7700", "put IPv6 addresses in brackets"),
        ("[::1:7700", "missing ']'"),
        ("[::1]7700", "expected ':PORT'"),
        ("[1.2.3.4]:7700", "not an IPv6 address"),
        ("300.1.1.1:7700", "invalid host"),
        ("1.2.3:7700", "invalid host"),
        ("-bad.example:7700", "invalid host"),
        ("bad_host:7700", "invalid host"),
        ("a..b:7700", "invalid host"),
        (":7700", "invalid host"),
        ("h\u00f6st:7700", "invalid host"),
    ],
)
def test_bad_addresses_get_clear_errors(text: str, needle: str) -> None:
    with pytest.raises(ValidationError, match="invalid") as err:
        parse_hostport(text)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_port_zero_only_when_allowed() -> None:
    assert parse_hostport("127.0.0.1:0", allow_zero=True) == ("127.0.0.1", 0)
    assert parse_port("0", allow_zero=True) == 0
    with pytest.raises(ValidationError, match="1-65535"):
        parse_port(0)
    with pytest.raises(ValidationError):
        parse_port(True)


@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True),
    ),
    st.integers(1, 65535),
)
def test_format_and_parse_round_trip(host: str, port: int) -> None:
    assert parse_hostport(format_hostport(host, port)) == (host, port)
