"""A user's own chip or model in a YAML file, in the catalog's schema, and did-you-mean names.

A file holds one entry, either bare (the fields of a ``hardware.yaml``/``models.yaml`` entry, with
an optional ``name:``; without one the file's stem is the name) or keyed by its name
(``my-chip: {fields}``), exactly as in the catalog. Every problem is one
:class:`InvalidInputError` naming the file, the field and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cost_models.errors import InvalidInputError, meant_field
from cost_models.hardware import USER_FILE
from cost_models.input_files import read_regular_text

#: Suffixes that mark a catalog-schema file (a config.json is read by ``cost_models.hf_config``).
YAML_SUFFIXES = (".yaml", ".yml")


def template_text(kind: str) -> str:
    """A commented file to start from (``tuner hardware --template``, ``tuner models --template``):
    every field with its meaning and unit, the values of a real chip or model and their source."""
    name = {"hardware": "hardware_template.yaml", "models": "models_template.yaml"}[kind]
    return resources.files("cost_models").joinpath(f"catalog/{name}").read_text(encoding="utf-8")


def looks_like_path(value: str) -> bool:
    """Whether a ``--model``/``--hardware`` value names a file rather than a catalog entry."""
    if Path(value).suffix.lower() in (*YAML_SUFFIXES, ".json") or "/" in value or "\\" in value:
        return True
    try:
        return Path(value).exists()
    except (OSError, ValueError):  # a name too long (or odd) to be a path
        return False


def suggestions(name: str, names: Iterable[str]) -> list[str]:
    """Catalog names close to ``name``: same name in another case, names it is a prefix of, then
    difflib's close matches (case-insensitive)."""
    by_lower = {n.lower(): n for n in names}
    wanted = name.lower().strip()
    if wanted in by_lower:
        return [by_lower[wanted]]
    prefixed = [n for low, n in sorted(by_lower.items()) if wanted and low.startswith(wanted)]
    if prefixed:
        return prefixed[:3]
    return [by_lower[m] for m in difflib.get_close_matches(wanted, list(by_lower), n=3, cutoff=0.6)]


def unknown_name_error(field: str, what: str, name: str, names: Iterable[str], listing: str, other: str) -> Exception:
    """``unknown hardware 'h100'; did you mean h100-sxm? (tuner hardware lists all)``."""
    names = sorted(names)
    shown = name if len(name) <= 100 else name[:100] + "..."
    close = suggestions(name, names)
    if close:
        fix = f"did you mean {' or '.join(close)}? ({listing} lists all)"
    else:
        fix = f"use one of {', '.join(names)}{other}"
    return InvalidInputError(field, f"unknown {what} {shown!r}", fix)


def load_entry(path: str | Path, field: str, spec_type: type[BaseModel], template: str) -> Any:
    """Read ``path`` into a ``spec_type`` (HardwareSpec or ModelSpec), validated as the catalog is."""
    file = Path(path)
    shown = str(file) if len(str(file)) <= 200 else str(file)[:200] + "..."
    fix_file = f"pass a YAML file in the catalog's schema ({template} prints one)"
    try:
        if file.is_dir():
            raise InvalidInputError(field, f"{shown} is a directory", fix_file)
        if not file.exists():
            raise InvalidInputError(field, f"no file at {shown}", fix_file)
        text = read_regular_text(file, field, fix_file)  # not a FIFO or a device (/dev/zero)
    except InvalidInputError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InvalidInputError(field, f"cannot read {shown} ({type(error).__name__})", fix_file) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInputError(field, f"{shown} is not valid YAML{where}", "fix the YAML syntax") from None
    except (RecursionError, ValueError, KeyError, AttributeError, TypeError, OverflowError) as error:
        raise InvalidInputError(
            field, f"{shown}: a YAML value cannot be read ({type(error).__name__})", "use plain numbers and strings"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(field, f"{shown} holds a {type(data).__name__}, not a mapping of fields", fix_file)
    fields = set(spec_type.model_fields)
    if len(data) == 1:
        ((key, value),) = data.items()
        if isinstance(value, dict) and key not in fields:  # the catalog's form: name: {fields}
            data = {"name": str(key), **value}
    data = dict(data)
    data.setdefault("name", file.stem)
    if not isinstance(data["name"], str) or not data["name"].strip():
        raise InvalidInputError(f"{field}: {shown}: name", "must be a non-empty string", "write e.g. name: my-chip")
    try:
        # USER_FILE: a number in a larger unit than the schema's (TFLOP/s, GB, TB/s, us) is refused
        # (cost_models.hardware's bounds).
        return spec_type.model_validate({str(k): v for k, v in data.items()}, context={USER_FILE: True})
    except ValidationError as error:
        errors = error.errors()
        # A misspelt field (memory_bandwith_bytes_per_s) is both an unknown field and a missing
        # one, and pydantic lists the missing one first: the line named the field the file has no
        # line for, not the line to fix. The unknown field comes first, with the missing name(s)
        # of the same entry as the spelling it meant.
        unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
        first = unknown[0] if unknown else errors[0]
        loc = ".".join(str(part) for part in first.get("loc", ()))
        where = f"{field}: {shown}: {loc}" if loc else f"{field}: {shown}"
        kind = first.get("type", "")
        if kind == "missing":
            raise InvalidInputError(where, "missing", f"add it ({template} shows every field)") from None
        if kind == "extra_forbidden":
            meant = meant_field(errors, first)
            fix = f"did you mean {meant}? rename it" if meant else "remove it or check its spelling"
            raise InvalidInputError(where, "unknown field", f"{fix} ({template})") from None
        message = first.get("msg", "invalid value").removeprefix("Value error, ")
        raise InvalidInputError(where, message, f"fix the value ({template} shows every field and unit)") from None
    except (TypeError, RecursionError):
        raise InvalidInputError(f"{field}: {shown}", "malformed: keys must be field names", fix_file) from None
