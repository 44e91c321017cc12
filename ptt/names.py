"""Validation of the names people type: users, groups, roles and ``host:port`` addresses.

Names rules (users and groups alike)::

    1-32 characters: ASCII letters, digits, '-', '_' and '.'; the first one a letter or a digit.

Names are **case-insensitive**: they are folded to lower case on the way in, so ``Alice`` and
``alice`` are the same account and ``ptt user add Alice`` stores ``alice``. Every layer (store,
wire, login proof) sees only the folded form, which keeps look-alike duplicates out and makes the
login proof independent of how the user typed the name. Call :func:`user_name` /
:func:`group_name` on anything that came from a person or a file before using it.

Private one-to-one call groups get a reserved name, ``call:a+b`` (:func:`call_group_name`), that
no ordinary group name can take, because ordinary names cannot contain ``:``.

Everything here raises :class:`~ptt.errors.ValidationError` with a message meant for a person.
"""

from __future__ import annotations

import ipaddress
import re

from ptt.errors import ValidationError
from ptt.protocol.messages import Role

__all__ = [
    "CALL_PREFIX",
    "MAX_NAME",
    "NAME_RULE",
    "ROLE_NAMES",
    "call_group_name",
    "call_members",
    "format_hostport",
    "group_name",
    "is_call_group_name",
    "parse_hostport",
    "parse_port",
    "parse_role",
    "role_name",
    "user_name",
]

MAX_NAME = 32
NAME_RULE = (
    f"1-{MAX_NAME} characters: letters, digits, '-', '_' or '.', starting with a letter or digit"
)
CALL_PREFIX = "call:"

_NAME_RE = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{MAX_NAME - 1}}}")
_HOST_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")

ROLE_NAMES: dict[Role, str] = {
    Role.VOLUNTEER: "volunteer",
    Role.DISPATCHER: "dispatcher",
    Role.COORDINATOR: "coordinator",
}
_ROLES_BY_NAME = {name: role for role, name in ROLE_NAMES.items()}


# --- user and group names ----------------------------------------------------------------------


def _name(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"invalid {kind} name {value!r}: expected text")
    folded = value.lower()
    # fullmatch on the folded text: ASCII only, so no Unicode look-alikes ("ａlice", "alİce")
    if not value.isascii() or _NAME_RE.fullmatch(folded) is None:
        shown = value if len(value) <= 40 else value[:40] + "..."
        if value == "":
            raise ValidationError(f"invalid {kind} name: empty; use {NAME_RULE}")
        if len(value) > MAX_NAME:
            raise ValidationError(
                f"invalid {kind} name {shown!r}: {len(value)} characters, at most {MAX_NAME}"
            )
        raise ValidationError(f"invalid {kind} name {shown!r}: use {NAME_RULE}")
    return folded


def user_name(value: object) -> str:
    """The canonical (lower-case) form of a user name; ValidationError if it breaks the rules."""
    return _name("user", value)


def group_name(value: object) -> str:
    """The canonical (lower-case) form of an ordinary group name; ValidationError if invalid.

    Call-group names (``call:a+b``) are refused here: use :func:`is_call_group_name` for those.
    """
    return _name("group", value)


def call_group_name(a: str, b: str) -> str:
    """The private group name for a one-to-one call between users ``a`` and ``b``.

    Order-independent (``call_group_name("bob", "alice") == "call:alice+bob"``), so both sides of a
    call find the same group. Raises ValidationError for invalid or identical users.
    """
    ua, ub = sorted((user_name(a), user_name(b)))
    if ua == ub:
        raise ValidationError(f"cannot call yourself ({ua!r})")
    return f"{CALL_PREFIX}{ua}+{ub}"


def call_members(name: str) -> tuple[str, str]:
    """The two users of a call-group name; ValidationError if ``name`` is not one."""
    if not isinstance(name, str) or not name.startswith(CALL_PREFIX) or name.count("+") != 1:
        raise ValidationError(f"invalid call group name {name!r}: expected 'call:user+user'")
    a, b = name[len(CALL_PREFIX):].split("+")
    if call_group_name(a, b) != name:
        raise ValidationError(f"invalid call group name {name!r}: not in canonical form")
    return a, b


def is_call_group_name(name: str) -> bool:
    """True when ``name`` is the canonical name of a one-to-one call group."""
    try:
        call_members(name)
    except ValidationError:
        return False
    return True


# --- roles -------------------------------------------------------------------------------------


def parse_role(value: object) -> Role:
    """``"volunteer" | "coordinator" | "dispatcher"`` (any case) to a :class:`Role`.

    A Role passes through unchanged.
    """
    if isinstance(value, Role):
        return value
    if isinstance(value, str):
        role = _ROLES_BY_NAME.get(value.strip().lower())
        if role is not None:
            return role
    raise ValidationError(
        f"invalid role {value!r}: expected volunteer, coordinator or dispatcher"
    )


def role_name(role: Role) -> str:
    """The lower-case name of a role, as the CLI and the store write it."""
    return ROLE_NAMES[Role(role)]


# --- host:port ---------------------------------------------------------------------------------


def parse_port(value: object, *, allow_zero: bool = False) -> int:
    """A port number 1-65535 (0 too with ``allow_zero``: bind to any free port)."""
    text = str(value).strip()
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not text.isdigit() or not low <= int(text) <= 65535:
        raise ValidationError(f"invalid port {value!r}: expected a number {low}-65535")
    return int(text)


def _host(text: str, original: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    host = text.lower().removesuffix(".")  # a fully qualified name's root dot
    labels = host.split(".")
    if (
        not host
        or len(host) > 253
        or not host.isascii()
        or not all(_HOST_LABEL_RE.fullmatch(label) for label in labels)
        or labels[-1].isdigit()  # "1.2.3" or "300.1.1.1": a broken IPv4 address, not a name
    ):
        raise ValidationError(
            f"invalid host in {original!r}: expected an IPv4 address, [IPv6] address or host name"
        )
    return host


def parse_hostport(
    text: object, default_port: int | None = None, *, allow_zero: bool = False
) -> tuple[str, int]:
    """``"host:port"`` to ``(host, port)``.

    Accepts ``192.0.2.1:7700``, ``[2001:db8::1]:7700``, ``ptt.example.org:7700`` and, when
    ``default_port`` is given, the same without the port (a bare IPv6 address too). IPv6 hosts come
    back without brackets; :func:`format_hostport` puts them back. Host names are lower-cased and
    checked for shape only (nothing is resolved here).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"invalid address {text!r}: expected HOST:PORT")
    original = text
    text = text.strip()
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValidationError(f"invalid address {original!r}: missing ']' after IPv6 address")
        host_text, rest = text[1:end], text[end + 1:]
        try:
            ipaddress.IPv6Address(host_text)
        except ValueError:
            raise ValidationError(
                f"invalid address {original!r}: {host_text!r} is not an IPv6 address"
            ) from None
        if rest and not rest.startswith(":"):
            raise ValidationError(f"invalid address {original!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        # a bare IPv6 address is only unambiguous when no port is expected after it
        try:
            ipaddress.IPv6Address(text)
            valid = default_port is not None
        except ValueError:
            valid = False
        if not valid:
            raise ValidationError(
                f"invalid address {original!r}: put IPv6 addresses in brackets, "
                f"e.g. [::1]:{default_port or 7700}"
            )
        host_text, port_text = text, None
    elif ":" in text:
        host_text, port_text = text.split(":")
    else:
        host_text, port_text = text, None
    if port_text is None:
        if default_port is None:
            raise ValidationError(f"invalid address {original!r}: expected HOST:PORT")
        port = default_port
    else:
        try:
            port = parse_port(port_text, allow_zero=allow_zero)
        except ValidationError as exc:
            raise ValidationError(f"invalid address {original!r}: {exc}") from None
    return _host(host_text, original), port


def format_hostport(host: str, port: int) -> str:
    """The inverse of :func:`parse_hostport`: brackets around IPv6 hosts."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
