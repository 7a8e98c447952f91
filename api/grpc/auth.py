"""The API key check for gRPC (metadata `authorization: Bearer <key>`), as a server interceptor: it runs on
the call's metadata, so a call without a valid key is refused before its message arrives or is decoded."""

from __future__ import annotations

import grpc

from api.grpc.errors import abort
from api.ranking.api_keys import caller_for
from api.ranking.metrics import observed_request
from shared.errors import ErrorType, RerankError

# RPCs any prober may call: liveness, readiness and the standard health service
OPEN_METHODS = frozenset({
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
    "/inference.GRPCInferenceService/ModelReady",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
})  # fmt: skip


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through when it carries a valid key (or the RPC is open); answers UNAUTHENTICATED otherwise."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = keys

    async def intercept_service(self, continuation, handler_call_details):
        if not self._keys or handler_call_details.method in OPEN_METHODS:
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        if caller_for(metadata.get("authorization"), self._keys) is not None:
            return await continuation(handler_call_details)
        return _refusal(handler_call_details.method.rsplit("/", 1)[-1])


def _refusal(rpc: str) -> grpc.RpcMethodHandler:
    async def refuse(_requests, context: grpc.aio.ServicerContext) -> None:
        with observed_request("grpc", route=rpc, status=grpc.StatusCode.UNAUTHENTICATED.name):
            await abort(context, RerankError(
                ErrorType.AUTHENTICATION, "missing or invalid API key: send metadata authorization: Bearer <key>"))  # fmt: skip

    # a streaming handler that reads nothing: refused on the call's headers, without waiting for (or decoding)
    # its message
    return grpc.stream_unary_rpc_method_handler(refuse)
