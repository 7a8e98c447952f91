"""The error taxonomy: one set of error types, mapped once per transport (HTTP in api/http/errors.py, gRPC in api/grpc/errors.py)."""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorType(str, Enum):
    """What went wrong, independent of the transport that reports it."""

    INVALID_BODY = "invalid_request_error"  # the body does not match the schema (HTTP 422)
    VALIDATION = "validation_error"  # well-formed but not servable, e.g. a pair over L with NONE (HTTP 400)
    AUTHENTICATION = "authentication_error"  # missing or wrong API key (HTTP 401)
    NOT_FOUND = "not_found_error"  # unknown model or route (HTTP 404)
    TOO_LARGE = "request_too_large"  # too many passages or too large a body (HTTP 413)
    UNSUPPORTED_MEDIA = "unsupported_media_type"  # a body that is neither JSON nor (for jobs) NDJSON (HTTP 415)
    CONFLICT = "conflict_error"  # not possible in the resource's current state, e.g. results of a running job (HTTP 409)
    OVERLOADED = "overloaded_error"  # queues full (HTTP 429)
    UNAVAILABLE = "service_unavailable"  # no broker or no worker for the model (HTTP 503)
    TIMEOUT = "timeout_error"  # no answer from a worker in time (HTTP 504)
    INTERNAL = "internal_error"  # a bug; the message never carries exception text (HTTP 500)


class RerankError(Exception):
    """An error a client is told about: its type and a message written for the client."""

    def __init__(self, type: ErrorType, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.type = ErrorType(type)
        self.message = message
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a worker returns as its task result (with `retry_after` when it says when to retry)."""
        data: dict[str, Any] = {"type": self.type.value, "message": self.message}
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RerankError":
        """Rebuild an error a worker returned; an unknown type becomes INTERNAL."""
        try:
            type_ = ErrorType(data.get("type"))
        except ValueError:
            type_ = ErrorType.INTERNAL
        retry_after = data.get("retry_after")
        return cls(type_, str(data.get("message") or "internal error"),
                   retry_after=retry_after if isinstance(retry_after, int) else None)  # fmt: skip

    def __repr__(self) -> str:
        return f"RerankError({self.type.value!r}, {self.message!r})"


class ErrorAnswer(Exception):
    """Raised by a worker task that answers with an error, so that Celery (and Flower) record it as FAILURE.

    Its one argument is the error's dict (`RerankError.to_dict`): the API reads it back from the task's
    result record (`exc_type` ErrorAnswer, `exc_message` [the dict]). It never holds a query or passage.
    """

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error)
        self.error = error


def instruction_refused() -> RerankError:
    """The 400 for an `instruction` sent to a model whose recipe has no {instruction} to fill (the API refuses
    it before queueing, from what the model's workers announce; a worker refuses it too)."""
    return RerankError(
        ErrorType.VALIDATION,
        "instruction: this model's prompt has no {instruction} placeholder, so it takes no instruction; "
        "leave the field out",
    )


ECHO_LIMIT = 40  # characters of a client's value an error message may repeat


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A client's value as an error message may quote it: repr'd, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
