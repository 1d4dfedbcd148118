"""The study spec documented from its own pydantic models (``search_spaces.spec.StudySpec``).

One source for three outputs: the JSON Schema editors complete from (``tuner spec --schema``),
the Markdown reference (``tuner spec --reference``, committed as docs/spec-reference.md) and the
comment above each field of the file ``tuner init`` writes. Types, defaults, allowed values and
bounds are read from the JSON Schema pydantic derives from the fields, never listed by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cost_models.metrics import METRICS
from search_spaces.spec import StudySpec


@dataclass(frozen=True)
class FieldDoc:
    """One spec field as documented: ``path`` is dotted (``space.chips``, ``objectives[].metric``)."""

    path: str
    type: str
    default: str  # "required" when the field has no default
    allowed: str  # allowed values or bounds; "" for any value of the type
    description: str
    section: str | None = None  # the $defs name when the field is itself a section


@dataclass(frozen=True)
class Section:
    path: str  # "" for the top level
    description: str
    fields: tuple[FieldDoc, ...]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of study specs."""
    return StudySpec.model_json_schema()


def _section_ref(node: dict) -> str | None:
    """The $defs name of a sub-model the field holds (directly, optionally or as list items)."""
    for candidate in (node, node.get("items", {}), *node.get("anyOf", ())):
        ref = candidate.get("$ref") or candidate.get("items", {}).get("$ref")
        if ref:
            return str(ref).rsplit("/", 1)[-1]
    return None


def _type(node: dict) -> str:
    if "$ref" in node:
        return "mapping"
    if "anyOf" in node:
        return " or ".join(dict.fromkeys(_type(n) for n in node["anyOf"]))
    if "const" in node:
        return json.dumps(node["const"])
    kind = node.get("type", "any")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    return str(kind)


def _enums(node: dict) -> list[Any]:
    found: list[Any] = list(node.get("enum", ()))
    if "const" in node:
        found.append(node["const"])
    for child in (node.get("items"), *node.get("anyOf", ())):
        if isinstance(child, dict):
            found += _enums(child)
    return found


_BOUNDS = (("exclusiveMinimum", "> {}"), ("minimum", ">= {}"), ("exclusiveMaximum", "< {}"), ("maximum", "<= {}"))


def _bounds(node: dict) -> list[str]:
    found = [text.format(_number(node[key])) for key, text in _BOUNDS if key in node]
    if "pattern" in node:
        found.append(f"matching {node['pattern']}")
    for child in (node.get("items"), *node.get("anyOf", ())):
        if isinstance(child, dict):
            found += _bounds(child)
    return found


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def allowed_text(node: dict) -> str:
    """Allowed values (enumerations) and bounds of one property schema, in words."""
    parts = []
    enums = _enums(node)
    if enums:
        # Once each as written: weight_bits' 16 is both the string and the YAML number.
        parts.append("one of " + ", ".join(dict.fromkeys(str(e) for e in enums)))
    parts += _bounds(node)
    if "minItems" in node or "maxItems" in node:
        low, high = node.get("minItems"), node.get("maxItems")
        parts.append(f"{low} to {high} items" if high is not None else f"at least {low} item(s)")
    return "; ".join(parts)


def _default(node: dict, required: bool) -> str:
    if required:
        return "required"
    value = node.get("default")
    if isinstance(value, dict):
        return "(the section's defaults)"
    return "null (absent)" if value is None else json.dumps(value)


def sections() -> list[Section]:
    """Every section of the spec (the top level first), each with its fields in declaration order."""
    schema = json_schema()
    defs = schema["$defs"]
    out: list[Section] = []

    def walk(path: str, node: dict) -> None:
        required = set(node.get("required", ()))
        fields = []
        children = []
        for name, prop in node["properties"].items():
            ref = _section_ref(prop)
            is_list = prop.get("type") == "array"
            field_path = f"{path}.{name}" if path else name
            fields.append(
                FieldDoc(
                    path=field_path,
                    type=("list of mappings" if is_list else "mapping") if ref else _type(prop),
                    default=_default(prop, name in required),
                    allowed="" if ref else allowed_text(prop),
                    description=prop.get("description", ""),
                    section=ref,
                )
            )
            if ref:
                children.append((field_path + ("[]" if is_list else ""), defs[ref]))
        out.append(Section(path, node.get("description", ""), tuple(fields)))
        for child_path, child in children:
            walk(child_path, child)

    walk("", schema)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def reference_markdown() -> str:
    """The Markdown reference of every spec field: docs/spec-reference.md."""
    lines = [
        "# Study spec reference",
        "",
        "<!-- Generated by `tuner spec --reference` from the pydantic models in search_spaces/spec.py; do not",
        "edit by hand: tests/tuner/test_spec_reference.py fails when this file and the models disagree. -->",
        "",
        "A study spec is a YAML file (`tuner init --model M --hardware H` writes a commented one; "
        "see also `studies/*.yaml`). Its JSON Schema, for editor completion, is printed by "
        "`tuner spec --schema`. The metrics an objective may name, with their units, better directions "
        "and meanings, are listed by `tuner metrics` (`tuner metrics --json` for scripts) and in "
        "[Metrics](#metrics-tuner-metrics) below.",
        "",
    ]
    for section in sections():
        lines += [f"## `{section.path}`" if section.path else "## Top level", ""]
        if section.description:
            lines += [" ".join(section.description.split()), ""]
        lines += ["| field | type | default | allowed | description |", "|---|---|---|---|---|"]
        for f in section.fields:
            name = f"[`{f.path}`](#{_anchor(f.path)})" if f.section else f"`{f.path}`"
            if f.section and f.path.endswith("objectives"):
                name = f"[`{f.path}`](#{_anchor(f.path + '[]')})"
            row = (name, _cell(f.type), _cell(f"`{f.default}`"), _cell(f.allowed), _cell(f.description))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        "## Metrics (`tuner metrics`)",
        "",
        "What `objectives[].metric` may name. A `serving.*` metric needs a `serving:` section, a "
        "`*.cost_usd_per_million_tokens` metric `price_per_chip_hour_usd` (your price: the catalog has none).",
        "",
        "| metric | unit | better | needs serving | description |",
        "|---|---|---|---|---|",
    ]
    for m in METRICS.values():
        row = (f"`{m.name}`", m.unit, m.direction, "yes" if m.needs_serving else "no", _cell(m.description))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return "\n".join(lines)


def _anchor(path: str) -> str:
    """GitHub's heading anchor of ``## `path` ``: lowercase, punctuation but - and _ dropped."""
    return "".join(c for c in path.lower() if c.isalnum() or c in "-_")
