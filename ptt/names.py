"""Validation of the names people type: users, groups, roles and ``host:port`` addresses.

Names are written in any script (``志愿者``, ``张伟``, ``Zoë``, ``north gate``) and follow PRECIS
(RFC 8264), through the maintained ``precis-i18n`` library:

- **user names**: the UsernameCaseMapped profile of RFC 8265 (IdentifierClass: letters and digits
  of every script, no spaces; full-width forms mapped to their usual width, lower-cased, NFC,
  the bidi rule for right-to-left scripts);
- **group names**: the NicknameCaseMapped profile of RFC 8266 (FreeformClass, so ``north gate``
  works: spaces are kept, leading and trailing ones dropped and runs collapsed; lower-cased,
  NFKC).

ptt then applies its own rules to the mapped form (RFC 8264 section 5.1 lets an application narrow
a profile): 1-32 *characters* (code points, not bytes); the first one a letter or a digit, so a
name never reads as a command-line option; of the ASCII punctuation only ``-``, ``_`` and ``.``
(and the space in group names), because ``:`` and ``+`` build the reserved call-group names and
``/`` or quotes do not belong in names that end up near paths and shells.

The mapped form **is** the name: ``Zoë``, ``ZOË`` and the full-width ``ＺＯË`` all become ``zoë``,
so they are one account, and a second one is refused as taken. Every layer (store, wire, login
proof, recordings) sees only the mapped form; call :func:`user_name` / :func:`group_name` on
anything that came from a person or a file before using it. Names that were valid under the older
ASCII-only rule (``[a-z0-9][a-z0-9._-]*``) map to themselves under both profiles, so stored data
needs no conversion.

Private one-to-one call groups get a reserved name, ``call:a+b`` (:func:`call_group_name`), that
no ordinary group name can take, because ordinary names cannot contain ``:``.

Everything here raises :class:`~ptt.errors.ValidationError` with a message meant for a person.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata

try:
    import precis_i18n
except ImportError as exc:  # a venv made before the dependency was added
    raise ImportError("ptt needs precis-i18n for user and group names: run 'make deps' "
                      "(or pip install -e .)") from exc

from ptt.errors import ValidationError
from ptt.protocol.messages import Role

__all__ = [
    "CALL_PREFIX",
    "GROUP_NAME_RULE",
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
    f"1-{MAX_NAME} letters or digits of any script, '-', '_' or '.', "
    "starting with a letter or digit"
)
GROUP_NAME_RULE = NAME_RULE.replace("'-', '_' or '.'", "spaces, '-', '_' or '.'")
CALL_PREFIX = "call:"

# A longer input is refused before the (per character) PRECIS work: a mapping can shorten a name
# (collapsed spaces) but never by this much.
_MAX_INPUT = 4 * MAX_NAME
NAME_CACHE = 16_384  # mapped names remembered (at most ~3 MB): a directory's active names
_PROFILES = {
    "user": precis_i18n.get_profile("UsernameCaseMapped"),
    "group": precis_i18n.get_profile("NicknameCaseMapped"),
}
_ASCII_ALLOWED = {"user": frozenset("-_."), "group": frozenset("-_. ")}
_RULES = {"user": NAME_RULE, "group": GROUP_NAME_RULE}
# Why precis-i18n refused a character, in words (its codes are "DISALLOWED/<kind>").
_REASONS = {
    "spaces": "spaces are not allowed",
    "has_compat": "{char} is a compatibility form: type the plain character",
    "bidi_rule": "it mixes right-to-left and left-to-right text in a way the bidi rule forbids",
    "controls": "control characters are not allowed",
    "unassigned": "{char} is not an assigned Unicode character",
    "empty": "empty",
}
_HOST_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")

ROLE_NAMES: dict[Role, str] = {
    Role.VOLUNTEER: "volunteer",
    Role.DISPATCHER: "dispatcher",
    Role.COORDINATOR: "coordinator",
}
_ROLES_BY_NAME = {name: role for role, name in ROLE_NAMES.items()}


# --- user and group names ----------------------------------------------------------------------


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _char(c: str) -> str:
    return f"U+{ord(c):04X} {c!r}" if c.isprintable() else f"U+{ord(c):04X}"


def _precis_reason(kind: str, value: str, exc: UnicodeEncodeError) -> str:
    code = str(exc.reason).rpartition("/")[2]
    char = _char(value[exc.start]) if 0 <= exc.start < len(value) else "a character"
    template = _REASONS.get(code, "{char} is not allowed in a " + kind + " name")
    return template.format(char=char)


def _name(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"invalid {kind} name {value!r}: expected text")
    return _mapped(kind, value)


# The PRECIS rules cost ~100 us a name, and a server maps the same names again and again (each
# request names them; a group change or import names thousands): good names are remembered, a
# bounded number. A refused name raises, which is never cached, so it costs each time.
@functools.lru_cache(maxsize=NAME_CACHE)
def _mapped(kind: str, value: str) -> str:
    rule = _RULES[kind]
    if value == "" or (kind == "group" and value.strip() == ""):
        raise ValidationError(f"invalid {kind} name: empty; use {rule}")
    if len(value) > _MAX_INPUT:
        raise ValidationError(
            f"invalid {kind} name {_shown(value)}: {len(value)} characters, at most {MAX_NAME}"
        )
    try:
        mapped = _PROFILES[kind].enforce(value)
    except UnicodeEncodeError as exc:
        why = _precis_reason(kind, value, exc)
        raise ValidationError(f"invalid {kind} name {_shown(value)}: {why}; use {rule}") from None
    if len(mapped) > MAX_NAME:
        raise ValidationError(
            f"invalid {kind} name {_shown(value)}: {len(mapped)} characters, at most {MAX_NAME}"
        )
    bad = next((c for c in mapped if c.isascii() and not c.isalnum()
                and c not in _ASCII_ALLOWED[kind]), None)
    if bad is not None:
        why = "spaces are not allowed" if bad == " " else f"{_char(bad)} is not allowed"
        raise ValidationError(f"invalid {kind} name {_shown(value)}: {why}; use {rule}")
    if unicodedata.category(mapped[0])[0] not in "LN":
        raise ValidationError(
            f"invalid {kind} name {_shown(value)}: not starting with a letter or digit; "
            f"use {rule}"
        )
    return mapped


def user_name(value: object) -> str:
    """The canonical (PRECIS UsernameCaseMapped) form of a user name; ValidationError if invalid."""
    return _name("user", value)


def group_name(value: object) -> str:
    """The canonical (PRECIS NicknameCaseMapped) form of an ordinary group name; ValidationError
    if invalid.

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
