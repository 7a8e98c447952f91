"""KServe V2 tensors for the reranker: decode `query`/`passage` inputs, encode `index`/`logit`/`token_count`.

Pure functions over the canonical protobuf messages (tritonclient's generated `service_pb2`).
"""

from __future__ import annotations

import struct

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from shared.errors import ErrorType, RerankError, shown
from shared.schemas import RankResult, Truncate, too_many_passages_message

INPUT_NAMES = ("query", "passage")
OUTPUT_SPECS = {"index": ("INT32", True), "logit": ("FP32", True), "token_count": ("INT32", False)}  # name: (type, [B,1])


def _invalid(message: str) -> RerankError:
    return RerankError(ErrorType.VALIDATION, message)


def _string_parameter(parameters, name: str, expected: str) -> str | None:
    """A string request parameter, or None when absent."""
    if name not in parameters:
        return None
    param = parameters[name]
    if param.WhichOneof("parameter_choice") != "string_param":
        raise _invalid(f"parameter '{name}' must be a string: {expected}")
    return param.string_param


def parse_truncate(parameters) -> Truncate:
    """The `truncate` request parameter: none/end in any case; absent means NONE."""
    given = _string_parameter(parameters, "truncate", "'none' or 'end'")
    if given is None:
        return "NONE"
    if given.upper() not in ("NONE", "END"):
        raise _invalid(f"parameter 'truncate' must be 'none' or 'end', not {shown(given)}")
    return given.upper()  # type: ignore[return-value]


def parse_instruction(parameters) -> str | None:
    """The `instruction` request parameter (our extension, as on HTTP): fills the model's prompt; absent: its default."""
    return _string_parameter(parameters, "instruction", "the task instruction")


def parse_max_chunks(parameters) -> int | None:
    """The `max_chunks_per_passage` request parameter (API.md section 6), an integer; absent: no windows."""
    name = "max_chunks_per_passage"
    if name not in parameters:
        return None
    param = parameters[name]
    if param.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param"):
        raise _invalid(f"parameter '{name}' must be an integer of 1 or more")
    value = getattr(param, param.WhichOneof("parameter_choice"))
    if value < 1:
        raise _invalid(f"parameter '{name}' must be an integer of 1 or more, not {value}")
    return int(value)


def _split_raw_bytes(raw: bytes, name: str, size: int) -> list[bytes]:
    """Triton's BYTES serialisation: each element is a 4-byte little-endian length, then the bytes. At most
    `size` elements are read (the batch size, already checked against RERANK_MAX_PASSAGES): a million tiny
    elements cost no more than `size` steps before they are refused."""
    items, offset = [], 0
    while offset < len(raw) and len(items) <= size:
        if offset + 4 > len(raw):
            raise _invalid(f"input '{name}': truncated length prefix in raw_input_contents")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _invalid(f"input '{name}': element longer than the raw_input_contents that hold it")
        items.append(raw[offset : offset + length])
        offset += length
    return items


def _batch_size(tensor, name: str, max_passages: int) -> int:
    shape = list(tensor.shape)
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        if shape[0] < 1:
            raise _invalid(f"input '{name}': batch size must be at least 1")
        if shape[0] > max_passages:  # before a single element is split or decoded
            raise RerankError(ErrorType.TOO_LARGE, too_many_passages_message(int(shape[0]), max_passages))
        return int(shape[0])
    raise _invalid(f"input '{name}': shape must be [B] or [B, 1], not {shape}")


def decode_inputs(request, max_passages: int) -> tuple[list[str], list[str]]:
    """The request's queries and passages, checked: both present, BYTES, a batch size of at most `max_passages`
    (RERANK_MAX_PASSAGES, checked on the shape before any element is read), the same for both, valid UTF-8."""
    by_name = {tensor.name: index for index, tensor in enumerate(request.inputs)}
    unknown = sorted(set(by_name) - set(INPUT_NAMES))
    if unknown:
        raise _invalid(f"unknown input(s) {unknown}; expected 'query' and 'passage'")
    missing = [name for name in INPUT_NAMES if name not in by_name]
    if missing:
        raise _invalid(f"missing input(s) {missing}; expected 'query' and 'passage'")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise _invalid("raw_input_contents must hold one entry per input")
    decoded = {}
    for name in INPUT_NAMES:
        index = by_name[name]
        tensor = request.inputs[index]
        if tensor.datatype != "BYTES":
            raise _invalid(f"input '{name}' must have datatype BYTES, not {tensor.datatype}")
        size = _batch_size(tensor, name, max_passages)
        contents = tensor.contents.bytes_contents
        elements = _split_raw_bytes(raw[index], name, size) if raw else list(contents[: size + 1])
        if len(elements) != size:
            count = len(elements) if len(elements) <= size else "more"
            raise _invalid(f"input '{name}': shape {list(tensor.shape)} but {count} elements")
        try:
            decoded[name] = [element.decode("utf-8") for element in elements]
        except UnicodeDecodeError:
            raise _invalid(f"input '{name}' is not valid UTF-8") from None
    queries, passages = decoded["query"], decoded["passage"]
    if len(queries) != len(passages):
        raise _invalid(f"inputs 'query' ({len(queries)}) and 'passage' ({len(passages)}) differ in batch size")
    if any(query != queries[0] for query in queries):
        raise _invalid("every element of 'query' must be the same query (one query ranks B passages)")
    if not queries[0]:
        raise _invalid("the query must not be empty")
    return queries, passages


def encode_outputs(result: RankResult, requested: list[str]) -> tuple[list, list[bytes]]:
    """Output tensors and their raw contents: `index`/`logit` best first, `token_count` in input order."""
    unknown = [name for name in requested if name not in OUTPUT_SPECS]
    if unknown:
        raise _invalid(f"unknown output(s) {unknown}; available: {list(OUTPUT_SPECS)}")
    order = sorted(range(len(result.logits)), key=lambda i: (-result.logits[i], i))
    arrays = {
        "index": np.asarray(order, dtype="<i4"),
        "logit": np.asarray([result.logits[i] for i in order], dtype="<f4"),
        "token_count": np.asarray(result.token_counts, dtype="<i4"),
    }
    tensors, contents = [], []
    for name in requested or list(OUTPUT_SPECS):
        datatype, column = OUTPUT_SPECS[name]
        shape = [len(order), 1] if column else [len(order)]
        tensors.append(pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=shape))
        contents.append(arrays[name].tobytes())
    return tensors, contents


def tensor_metadata() -> tuple[list, list]:
    """ModelMetadata's inputs and outputs."""
    meta = pb.ModelMetadataResponse.TensorMetadata
    inputs = [meta(name=name, datatype="BYTES", shape=[-1, 1]) for name in INPUT_NAMES]
    outputs = [
        meta(name=name, datatype=datatype, shape=[-1, 1] if column else [-1])
        for name, (datatype, column) in OUTPUT_SPECS.items()
    ]
    return inputs, outputs
