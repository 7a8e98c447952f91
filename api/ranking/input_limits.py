"""Limits on what one ranking request may carry, checked by every transport before anything is queued."""

from __future__ import annotations

from shared.errors import ErrorType, RerankError
from shared.schemas import too_many_passages_message
from shared.settings import Settings


def check_request(settings: Settings, query: str, passages: list[str], instruction: str | None = None) -> None:
    """TOO_LARGE past the passage or character limits; VALIDATION for text that is not valid Unicode.

    JSON may spell lone UTF-16 surrogates (`"\\ud800"`): they decode to a Python string that no
    tokenizer, and no UTF-8 encoder, accepts, so they are refused here rather than failing in a worker.
    An `instruction` is filled into every pair's prompt: it counts once per passage against
    RERANK_MAX_REQUEST_CHARS, and alone against RERANK_MAX_INSTRUCTION_CHARS.
    """
    instruction_chars = 0 if instruction is None else len(instruction)
    if instruction_chars > settings.max_instruction_chars:
        raise RerankError(
            ErrorType.TOO_LARGE,
            f"instruction has {instruction_chars} characters; at most {settings.max_instruction_chars} are accepted "
            "(RERANK_MAX_INSTRUCTION_CHARS)",
        )
    if instruction and not _encodes(instruction):
        raise RerankError(ErrorType.VALIDATION, "instruction is not valid Unicode (a lone surrogate)")
    if len(passages) > settings.max_passages:
        raise RerankError(ErrorType.TOO_LARGE, too_many_passages_message(len(passages), settings.max_passages))
    texts = [query, *passages]  # index 0 is the query, i + 1 is passage i
    lengths = list(map(len, texts))
    limit = settings.max_passage_chars
    too_long = next((i for i, n in enumerate(lengths) if n > limit), None) if max(lengths) > limit else None
    not_unicode = None
    try:
        "".join(texts).encode("utf-8")  # one check of every text; only a failure looks for the culprit
    except UnicodeEncodeError:
        not_unicode = next(i for i, text in enumerate(texts) if not _encodes(text))
    if too_long is not None and (not_unicode is None or too_long <= not_unicode):
        raise RerankError(
            ErrorType.TOO_LARGE,
            f"{_name(too_long)} has {lengths[too_long]} characters; at most {limit} are accepted (RERANK_MAX_PASSAGE_CHARS)",
        )
    if not_unicode is not None:
        raise RerankError(ErrorType.VALIDATION, f"{_name(not_unicode)} is not valid Unicode (a lone surrogate)")
    total = sum(lengths) + instruction_chars * len(passages)
    if total > settings.max_request_chars:
        counted = ", its instruction counted once per passage" if instruction_chars else ""
        raise RerankError(
            ErrorType.TOO_LARGE,
            f"the request has {total} characters{counted}; at most {settings.max_request_chars} are accepted "
            "(RERANK_MAX_REQUEST_CHARS)",
        )


def check_max_chunks(settings: Settings, value: int | None, field: str = "max_chunks_per_passage") -> None:
    """INVALID_BODY (422) for windows per passage past RERANK_MAX_CHUNKS_PER_PASSAGE (the schema refuses < 1)."""
    limit = settings.max_chunks_per_passage
    if value is not None and value > limit:
        raise RerankError(
            ErrorType.INVALID_BODY,
            f"{field} must be at most {limit}: the windows one passage may be scored as (RERANK_MAX_CHUNKS_PER_PASSAGE)",
        )


def _name(index: int) -> str:
    return "query" if index == 0 else f"passages[{index - 1}]"


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
