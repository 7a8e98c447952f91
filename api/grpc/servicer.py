"""`inference.GRPCInferenceService` (KServe V2 / Triton) over the ranking service: it only translates."""

from __future__ import annotations

import functools
import logging
from typing import Awaitable, Callable

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from api.grpc import protocol
from api.grpc.errors import GRPC_STATUS, abort
from api.ranking.metrics import count_not_ready, observed_request
from api.ranking.model_names import grpc_model_name
from api.ranking.service import RankingService
from shared.errors import ErrorType, RerankError, shown
from shared.log_format import is_valid_request_id
from shared.settings import Settings

log = logging.getLogger(__name__)

SERVER_NAME = "rerank-fleet"
SERVER_VERSION = "0.1.0"


def translated(method: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """Wrap an RPC: count it, and turn RerankError (or a bug) into a gRPC status (the API key is checked
    before, by api/grpc/auth.py)."""

    @functools.wraps(method)
    async def rpc(self: "InferenceServicer", request, context: grpc.aio.ServicerContext):
        with observed_request("grpc", route=method.__name__, status="OK") as call:
            try:
                return await method(self, request, context)
            except RerankError as error:
                call.status = GRPC_STATUS[error.type].name
                await abort(context, error)
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("%s failed", method.__name__)
                call.status = grpc.StatusCode.INTERNAL.name
                await abort(context, RerankError(ErrorType.INTERNAL, "internal error"))

    return rpc


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The RPCs a Triton client calls; the others answer UNIMPLEMENTED (`_unimplemented`, below)."""

    def __init__(self, settings: Settings, service: RankingService) -> None:
        self._settings = settings
        self._service = service

    async def resolve_model(self, grpc_name: str) -> str:
        """The served model id whose gRPC name is `grpc_name`; NOT_FOUND otherwise."""
        for model_id in await self._service.served_models():
            if grpc_model_name(model_id) == grpc_name or model_id == grpc_name:
                return model_id
        raise RerankError(ErrorType.NOT_FOUND, f"model {shown(grpc_name)} is not served here")

    @translated
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @translated
    async def ServerReady(self, request, context):
        try:
            await self._service.check_ready()
        except RerankError:
            count_not_ready("grpc")
            return pb.ServerReadyResponse(ready=False)
        return pb.ServerReadyResponse(ready=True)

    @translated
    async def ModelReady(self, request, context):
        try:
            await self._service.check_ready(await self.resolve_model(request.name))
        except RerankError as error:
            if error.type is ErrorType.NOT_FOUND:
                raise
            count_not_ready("grpc")
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @translated
    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=[])

    @translated
    async def ModelMetadata(self, request, context):
        model_id = await self.resolve_model(request.name)
        inputs, outputs = protocol.tensor_metadata()
        return pb.ModelMetadataResponse(
            name=grpc_model_name(model_id), versions=["1"], platform=SERVER_NAME, inputs=inputs, outputs=outputs
        )

    @translated
    async def ModelInfer(self, request, context):
        if request.id and not is_valid_request_id(request.id):  # it becomes the request id of every log line
            raise RerankError(ErrorType.VALIDATION, "the request id must be 1 to 128 characters of [A-Za-z0-9._-]")
        model_id = await self.resolve_model(request.model_name)
        truncate = protocol.parse_truncate(request.parameters)
        instruction = protocol.parse_instruction(request.parameters)
        max_chunks = protocol.parse_max_chunks(request.parameters)
        queries, passages = protocol.decode_inputs(request, self._settings.max_passages)
        remaining = context.time_remaining()
        result = await self._service.score(
            model=model_id, query=queries[0], passages=passages, truncate=truncate, instruction=instruction,
            max_chunks_per_passage=max_chunks, request_id=request.id or None,
            timeout=remaining if remaining is not None and remaining > 0 else None,
        )  # fmt: skip
        tensors, contents = protocol.encode_outputs(result, [output.name for output in request.outputs])
        return pb.ModelInferResponse(
            model_name=request.model_name,
            model_version=request.model_version or "1",
            id=request.id,
            outputs=tensors,
            raw_output_contents=contents,
        )


def _unimplemented(name: str) -> Callable[..., Awaitable]:
    async def rpc(self: InferenceServicer, request, context: grpc.aio.ServicerContext):
        with observed_request("grpc", route=name, status=grpc.StatusCode.UNIMPLEMENTED.name):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not implemented by {SERVER_NAME}")

    rpc.__name__ = name
    return rpc


# The generated defaults raise NotImplementedError, which grpc.aio logs with a traceback on every call
# (ModelConfig and RepositoryIndex are asked for by Triton tooling): each RPC not served above answers
# UNIMPLEMENTED quietly instead.
for _name in dir(service_pb2_grpc.GRPCInferenceServiceServicer):
    if not _name.startswith("_") and _name not in InferenceServicer.__dict__:
        setattr(InferenceServicer, _name, _unimplemented(_name))
