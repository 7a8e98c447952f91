"""Limits on what one ranking request may carry, checked by every transport before anything is queued."""

from __future__ import annotations

from shared.errors import ErrorType, RerankError
from shared.settings import Settings


def check_request(settings: Settings, query: str, passages: list[str]) -> None:
    """TOO_LARGE past the passage or character limits; VALIDATION for text that is not valid Unicode.

    JSON may spell lone UTF-16 surrogates (`"\\ud800"`): they decode to a Python string that no
    tokenizer, and no UTF-8 encoder, accepts, so they are refused here rather than failing in a worker.
    """
    if len(passages) > settings.max_passages:
        raise RerankError(
            ErrorType.TOO_LARGE,
            f"{len(passages)} passages sent; at most {settings.max_passages} are accepted per request",
        )
    total = 0
    for name, text in (("query", query), *((f"passages[{i}]", p) for i, p in enumerate(passages))):
        if len(text) > settings.max_passage_chars:
            raise RerankError(
                ErrorType.TOO_LARGE,
                f"{name} has {len(text)} characters; at most {settings.max_passage_chars} are accepted "
                "(RERANK_MAX_PASSAGE_CHARS)",
            )
        total += len(text)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RerankError(ErrorType.VALIDATION, f"{name} is not valid Unicode (a lone surrogate)") from None
    if total > settings.max_request_chars:
        raise RerankError(
            ErrorType.TOO_LARGE,
            f"the request has {total} characters; at most {settings.max_request_chars} are accepted "
            "(RERANK_MAX_REQUEST_CHARS)",
        )
