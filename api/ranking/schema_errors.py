"""Schema errors told to a client in plain words: which field (`passages[0].text`), what is wrong, never the
client's input echoed back beyond a few dozen characters."""

from __future__ import annotations

from typing import Any, Sequence

from shared.errors import shown

# pydantic's error types, said for people (pydantic's own wording names classes: "instance of Passage")
_PLAIN = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "literal_error": "must be one of {expected}",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "too_long": "must have at most {max_length} items",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
}


def field_path(loc: Sequence[Any]) -> str:
    """`passages[0].text` for pydantic's ('body', 'passages', 0, 'text')."""
    path = ""
    for part in loc:
        if part == "body" and not path:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = str(part)
            name = name if len(name) <= 40 else shown(name)
            path += f".{name}" if path else name
    return path or "body"


def describe_validation_errors(errors: Sequence[dict[str, Any]]) -> str:
    """`field: problem` for each schema error (pydantic's `errors()`), in plain words."""
    parts = []
    for err in errors[:10]:
        kind = err.get("type", "")
        if kind == "json_invalid":
            parts.append("the body is not valid JSON")
            continue
        if kind in ("model_attributes_type", "dict_type", "model_type") and tuple(err.get("loc", ())) == ("body",):
            parts.append("the body must be a JSON object, sent with Content-Type: application/json")
            continue
        template = _PLAIN.get(kind)
        if template is None:
            problem = str(err.get("msg", "is invalid")).replace("Input should be", "must be").replace("Value error, ", "")
        else:
            try:
                problem = template.format(**(err.get("ctx") or {}))
            except (KeyError, IndexError):
                problem = template
        parts.append(f"{field_path(err.get('loc', ()))} {problem}")
    return "; ".join(parts) or "invalid request body"
