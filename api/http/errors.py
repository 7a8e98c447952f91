"""The error taxonomy mapped to HTTP: one envelope, one status per error type, declared in OpenAPI."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.http.json_body import UnreadableBody
from api.ranking.metrics import count_error
from api.ranking.schema_errors import describe_validation_errors, field_path
from shared.errors import ErrorType, RerankError
from shared.schemas import TOO_MANY_PASSAGES, ErrorBody, ErrorEnvelope

log = logging.getLogger(__name__)

HTTP_STATUS: dict[ErrorType, int] = {
    ErrorType.INVALID_BODY: 422,
    ErrorType.VALIDATION: 400,
    ErrorType.AUTHENTICATION: 401,
    ErrorType.NOT_FOUND: 404,
    ErrorType.TOO_LARGE: 413,
    ErrorType.UNSUPPORTED_MEDIA: 415,
    ErrorType.CONFLICT: 409,
    ErrorType.OVERLOADED: 429,
    ErrorType.UNAVAILABLE: 503,
    ErrorType.TIMEOUT: 504,
    ErrorType.INTERNAL: 500,
}

_STATUS_TYPE = {404: ErrorType.NOT_FOUND, 401: ErrorType.AUTHENTICATION, 413: ErrorType.TOO_LARGE,
                408: ErrorType.TIMEOUT, 405: ErrorType.INVALID_BODY}  # fmt: skip

ERROR_RESPONSES = {
    status: {"model": ErrorEnvelope, "description": type_.value}
    for type_, status in HTTP_STATUS.items()
    if type_ is not ErrorType.INVALID_BODY
}
ERROR_RESPONSES[422] = {"model": ErrorEnvelope, "description": ErrorType.INVALID_BODY.value}


def json_response(body: BaseModel, status: int = 200) -> Response:
    """A response model as JSON, serialised once (FastAPI would validate a returned model again first)."""
    return Response(body.model_dump_json(), status_code=status, media_type="application/json")


def error_response(error: RerankError, status: int | None = None, *, counted: bool = True) -> JSONResponse:
    """The envelope for one error, with Retry-After where the client should come back later; `counted` in
    rerank_request_errors unless it is a readiness probe's answer."""
    status = status or HTTP_STATUS[error.type]
    if counted:
        count_error("http", error.type.value)
    body = ErrorEnvelope(error=ErrorBody(message=error.message, type=error.type.value, code=status))
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.type is ErrorType.AUTHENTICATION:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def schema_error(errors: Sequence[dict[str, Any]]) -> RerankError:
    """The error for a body the schema refused: 413 for too many passages (refused on the list's length), 400 for
    text that is not valid Unicode (a lone surrogate), as when the service checks them; else 422."""
    for err in errors:
        if err.get("type") == TOO_MANY_PASSAGES:
            return RerankError(ErrorType.TOO_LARGE, err["msg"])
        if err.get("type") == "string_unicode":
            field = field_path(err.get("loc", ()))
            return RerankError(ErrorType.VALIDATION, f"{field} is not valid Unicode (a lone surrogate)")
    return RerankError(ErrorType.INVALID_BODY, describe_validation_errors(errors))


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves the API as the one envelope; no exception text reaches a client."""

    @app.exception_handler(RerankError)
    async def _rerank_error(_: Request, exc: RerankError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(schema_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # the body could not be read as JSON: api/http/json_body.py says why
            message = exc.detail if isinstance(exc, UnreadableBody) else "the body could not be read as UTF-8 JSON"
            return error_response(RerankError(ErrorType.VALIDATION, message))
        type_ = _STATUS_TYPE.get(exc.status_code, ErrorType.INVALID_BODY)
        response = error_response(RerankError(type_, str(exc.detail)), exc.status_code)
        if exc.status_code == 408:  # the rest of that body would be read as the next request
            response.headers["Connection"] = "close"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(RerankError(ErrorType.INTERNAL, "internal error"))
