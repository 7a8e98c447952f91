"""A deadline for a unary call's request message (RERANK_BODY_TOTAL_TIMEOUT), as a server interceptor.

grpc.aio hands a unary handler its message only once the message has arrived: a stream opened with HEADERS and
never sent DATA would wait for ever, holding its memory. Each unary-unary handler is served here as a
stream-unary one that takes the first message within the deadline (DEADLINE_EXCEEDED otherwise) and passes it
to the original handler, so the servicer is unchanged.
"""

from __future__ import annotations

import asyncio

import grpc

from api.grpc.errors import abort
from api.ranking.metrics import observed_request
from shared.errors import ErrorType, RerankError


class MessageDeadlineInterceptor(grpc.aio.ServerInterceptor):
    """Ends a unary call whose request message has not arrived within `seconds` with DEADLINE_EXCEEDED."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        rpc, unary, seconds = handler_call_details.method.rsplit("/", 1)[-1], handler.unary_unary, self._seconds

        async def first_message_then_unary(requests, context: grpc.aio.ServicerContext):
            try:
                request = await asyncio.wait_for(anext(requests), seconds)
            except (asyncio.TimeoutError, StopAsyncIteration) as exc:
                late = isinstance(exc, asyncio.TimeoutError)
                error = RerankError(ErrorType.TIMEOUT, "the request message did not arrive within "
                                    "RERANK_BODY_TOTAL_TIMEOUT") if late else RerankError(
                                    ErrorType.VALIDATION, "the call carried no request message")  # fmt: skip
                with observed_request("grpc", route=rpc, status="DEADLINE_EXCEEDED" if late else "INVALID_ARGUMENT"):
                    await abort(context, error)
            return await unary(request, context)

        return grpc.stream_unary_rpc_method_handler(
            first_message_then_unary, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )  # fmt: skip
