"""How clients may spell a served model id: exactly, or with `_` and `.` read alike (LiteLLM's NIM route),
and the NIM's gRPC spelling of it."""

from __future__ import annotations

import re
from typing import Iterable


def grpc_model_name(model_id: str) -> str:
    """The NIM's gRPC spelling of a model id: `/`, `-` and `.` become `_`."""
    return re.sub(r"[/.\-]", "_", model_id)


def normalise_model_name(name: str) -> str:
    """`name` with every `_` read as `.`: LiteLLM puts `llama-3_2-...` in the URL for `llama-3.2-...`."""
    return name.replace("_", ".")


def match_served_model(name: str, served: Iterable[str]) -> str | None:
    """The served id `name` means: an exact match, else the only id equal to it after normalising.

    No other tolerance (case, dashes, prefixes): an unrelated or ambiguous name matches nothing.
    """
    served = list(served)
    if name in served:
        return name
    wanted = normalise_model_name(name)
    matches = [model for model in served if normalise_model_name(model) == wanted]
    return matches[0] if len(matches) == 1 else None
