"""The project's one exception type for bad input.

The library never prints or exits; it raises :class:`InvalidInputError` naming the offending field
and how to fix it, and the CLI turns that into a one-line message and exit code 2.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pydantic


class InvalidInputError(ValueError):
    """Bad user input: ``field`` names what is wrong, ``fix`` says what to do instead."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


def refuse_outside(field: str, value: object, bounds: tuple[float, float], unit: str, fix: str) -> None:
    """Raise :class:`InvalidInputError` unless ``value`` is a finite number within ``bounds``
    (inclusive). Explicit bounds, not ``> 0``: a subnormal such as 1e-320 is above 0, and a price
    or rate that small (or 1e300) made dollars of 0 and 60-digit figures, and NaN latencies."""
    low, high = bounds
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise InvalidInputError(field, f"{value!r} is not {unit} from {low:g} to {high:g}", fix)


#: A host name's label (RFC 1123 section 2.1: letters, digits and hyphens, 1-63 characters, no hyphen
#: at either end), with '_' too: Docker Compose and some cluster DNS service names carry one.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def refuse_bad_host(field: str, host: str) -> None:
    """Raise :class:`InvalidInputError` unless ``host`` is an IPv4 address (four numbers 0-255),
    an IPv6 address (bracketed or not, a zone after '%' allowed), or a host name (RFC 1123 labels,
    253 characters at most). A name of digits and dots is an IPv4 address or nothing: RFC 1123
    2.1 leaves no all-numeric top label, so '999.0.0.1' is not a name (getaddrinfo sent it to DNS,
    where the dashboard found it did not resolve; tuner export wrote it into the launch lines), and
    inet_aton's short forms ('127.1') are refused rather than read as another address."""
    fix = "pass an IP address or host name, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
    if not isinstance(host, str) or not host:
        raise InvalidInputError(field, f"{host!r} is not an address", fix)
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]") if host.startswith("[") else host)
        except ValueError:
            raise InvalidInputError(field, f"{host!r} is not an IPv6 address", fix) from None
        if host.startswith("[") != host.endswith("]"):
            raise InvalidInputError(field, f"{host!r} is not an IPv6 address", fix)
        return
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidInputError(field, f"{host!r} is not an IPv4 address (four numbers 0-255)", fix) from None
        return
    name = host.removesuffix(".")  # a fully qualified name's root
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise InvalidInputError(field, f"{host!r} is not an IP address or host name", fix)


def from_validation_error(error: pydantic.ValidationError, where: str) -> InvalidInputError:
    """Condense a pydantic ``ValidationError`` into one :class:`InvalidInputError` (first problem)."""
    errors = error.errors()
    first = errors[0]
    misspelt = _misspelt_field(errors)
    if misspelt is not None:
        # `promt_len: 2048` in workload: pydantic's first error was "workload.prompt_len: missing;
        # add it", beside the line the user did write.
        unknown, meant = misspelt
        return InvalidInputError(f"{where}.{unknown}", "unknown field", f"did you mean {meant}? rename it")
    loc = ".".join(str(part) for part in first.get("loc", ()) if part != "__root__")
    field = f"{where}.{loc}" if loc else where
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        return InvalidInputError(field, "unknown field", "remove it or check its spelling")
    if first.get("type") == "missing":
        return InvalidInputError(field, "missing", "add it")
    # A value of the wrong type (quoted in YAML: max_ttft_s: "1.0"): show what was given and how
    # to write it, not only pydantic's "Input should be a valid number".
    kind = str(first.get("type", "")).partition("_")[0]
    written = _TYPE_FIXES.get(kind) if str(first.get("type", "")).endswith(("_type", "_parsing")) else None
    if written is not None and "input" in first:
        given = repr(first["input"])
        given = given if len(given) <= 80 else given[:77] + "..."  # a 5,000-character string
        return InvalidInputError(field, message, f"got {given}; write {written} without quotes")
    if first.get("type") == "list_type" and "input" in first:
        # One value where a list goes (flash_attention: true, chips: 4): "Input should be a valid
        # list" named no fix; the value in brackets is one.
        given = first["input"]
        shown = str(given).lower() if isinstance(given, bool) else str(given)
        # Shown bare only when it is plain text (a lone surrogate, "\ud800", cannot be printed).
        if isinstance(given, (str, int, float)) and shown.isascii() and shown.isprintable() and len(shown) <= 60:
            return InvalidInputError(field, message, f"got {given!r}; write a list in brackets, e.g. [{shown}]")
    bound = _BOUND_FIXES.get(str(first.get("type", "")))
    context = first.get("ctx") or {}
    if bound is not None and "input" in first and isinstance(context.get(bound[0]), (int, float)):
        # Out of a numeric bound (max_ttft_s: 1e-300): the value given and which way to move it.
        key, fix = bound
        return InvalidInputError(field, message, f"got {first['input']!r}; {fix} {context[key]:g}")
    # A string out of its pattern or length (a study name 'a/b', '', 300 characters): the value
    # given and what to write; these printed pydantic's message alone, no fix.
    text_fix = _TEXT_FIXES.get(str(first.get("type", "")))
    if text_fix is not None and "input" in first:
        given = repr(first["input"])
        given = given if len(given) <= 60 else given[:57] + "..."
        return InvalidInputError(field, message, f"got {given}; {text_fix.format(**context)}")
    return InvalidInputError(field, message)


def _error_path(error: Mapping[str, Any]) -> tuple:
    return tuple(part for part in error.get("loc", ()) if part != "__root__")


def meant_field(errors: list, unknown: Mapping[str, Any]) -> str | None:
    """The missing field of ``unknown``'s mapping (an ``extra_forbidden`` error of pydantic's
    ``errors``) that its key is close to, else None: the key is then a misspelling of it
    (memory_bandwith_bytes_per_s, promt_len), which pydantic reports twice, as unknown and as
    missing, the missing one first."""
    import difflib

    written = _error_path(unknown)
    if not written:
        return None
    missing = [
        str(_error_path(e)[-1]) for e in errors if e.get("type") == "missing" and _error_path(e)[:-1] == written[:-1]
    ]
    meant = difflib.get_close_matches(str(written[-1]), missing, n=1, cutoff=0.6)
    return meant[0] if meant else None


def _misspelt_field(errors: list) -> tuple[str, str] | None:
    """(the unknown field's dotted path, the missing field it is close to) of the first unknown
    field that is a misspelling (:func:`meant_field`), else None."""
    for unknown in (e for e in errors if e.get("type") == "extra_forbidden"):
        meant = meant_field(errors, unknown)
        if meant is not None:
            return ".".join(str(part) for part in _error_path(unknown)), meant
    return None


#: How to meet a string's pattern or length bounds (pydantic's error type: the fix, formatted
#: with the error's context). The one pattern the specs use is a study name's (search_spaces.spec).
_TEXT_FIXES = {
    "string_pattern_mismatch": "use letters, digits, '.', '_' and '-', starting with a letter or digit",
    "string_too_short": "write at least {min_length} character(s)",
    "string_too_long": "write at most {max_length} characters",
}


#: pydantic's error type of a numeric bound: its context key and how to meet it.
_BOUND_FIXES = {
    "greater_than_equal": ("ge", "write at least"),
    "greater_than": ("gt", "write more than"),
    "less_than_equal": ("le", "write at most"),
    "less_than": ("lt", "write less than"),
}

#: How to write a value of each pydantic type kind whose type was wrong.
_TYPE_FIXES = {"float": "a number", "int": "a whole number", "bool": "true or false"}
