"""The error taxonomy mapped to gRPC status codes (the HTTP mapping is api/http/errors.py)."""

from __future__ import annotations

import grpc

from api.ranking.metrics import count_error
from shared.errors import ErrorType, RerankError

GRPC_STATUS: dict[ErrorType, grpc.StatusCode] = {
    ErrorType.INVALID_BODY: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorType.VALIDATION: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorType.AUTHENTICATION: grpc.StatusCode.UNAUTHENTICATED,
    ErrorType.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorType.TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorType.UNSUPPORTED_MEDIA: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorType.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorType.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorType.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorType.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorType.INTERNAL: grpc.StatusCode.INTERNAL,
}


async def abort(context: grpc.aio.ServicerContext, error: RerankError) -> None:
    """End the call with the error's status code and message (and retry-after where given)."""
    count_error("grpc", error.type.value)
    if error.retry_after is not None:
        context.set_trailing_metadata((("retry-after", str(error.retry_after)),))
    await context.abort(GRPC_STATUS[error.type], error.message)
