"""Schema errors told to a client: which field, what is wrong, never the client's input echoed back."""

from __future__ import annotations

from typing import Any, Sequence


def describe_validation_errors(errors: Sequence[dict[str, Any]]) -> str:
    """`field.path: problem` for each schema error (pydantic's `errors()`), without echoing the client's input."""
    parts = []
    for err in errors[:10]:
        location = ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "body"
        if err.get("type") == "extra_forbidden":
            parts.append(f"{location}: unknown field")
        elif err.get("type") == "json_invalid":
            parts.append("body: not valid JSON")
        else:
            parts.append(f"{location}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request body"
