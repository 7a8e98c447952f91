"""KServe V2 tensor decoding and encoding, on the canonical protobuf messages."""

import struct

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from api.grpc.protocol import decode_inputs, encode_outputs, parse_truncate
from api.ranking.model_names import grpc_model_name
from shared.errors import RerankError
from shared.schemas import RankResult


def raw(*items: str) -> bytes:
    return b"".join(struct.pack("<I", len(i.encode())) + i.encode() for i in items)


def request(query_items, passage_items, shape=None, datatype="BYTES"):
    req = pb.ModelInferRequest(model_name="m")
    for name, items in (("query", query_items), ("passage", passage_items)):
        req.inputs.add(name=name, datatype=datatype, shape=shape or [len(items)])
        req.raw_input_contents.append(raw(*items))
    return req


MAX = 512  # RERANK_MAX_PASSAGES


def test_model_names_follow_the_nim_spelling():
    assert grpc_model_name("nvidia/llama-3.2-nv-rerankqa-1b-v2") == "nvidia_llama_3_2_nv_rerankqa_1b_v2"


def test_raw_length_prefixed_strings_decode_including_empty_and_unicode():
    queries, passages = decode_inputs(request(["q", "q", "q"], ["", "héllo 🚀", "x" * 300]), MAX)
    assert queries == ["q"] * 3 and passages == ["", "héllo 🚀", "x" * 300]


def test_b_by_1_shape_is_accepted_and_b_by_2_is_not():
    assert decode_inputs(request(["q"] * 2, ["a", "b"], shape=[2, 1]), MAX)[1] == ["a", "b"]
    with pytest.raises(RerankError, match="shape"):
        decode_inputs(request(["q"] * 2, ["a", "b"], shape=[1, 2]), MAX)


def test_truncated_raw_contents_are_refused():
    req = request(["q"], ["a"])
    req.raw_input_contents[1] = raw("abc")[:-1]
    with pytest.raises(RerankError, match="longer than"):
        decode_inputs(req, MAX)


def test_invalid_utf8_is_refused():
    req = request(["q"], ["a"])
    req.raw_input_contents[1] = struct.pack("<I", 2) + b"\xff\xfe"
    with pytest.raises(RerankError, match="UTF-8"):
        decode_inputs(req, MAX)


def test_a_batch_over_the_passage_limit_is_refused_on_its_shape_before_splitting():
    req = request(["q"] * 3, ["a", "b", "c"])
    req.raw_input_contents[0] = raw("q") * 1_000_000  # a million elements behind a shape of 3: never split
    with pytest.raises(RerankError, match="3 passages sent; at most 2"):
        decode_inputs(req, 2)
    with pytest.raises(RerankError, match="shape \\[3\\] but more elements"):
        decode_inputs(req, MAX)


def test_truncate_parameter_in_any_case_and_absent_means_none():
    req = pb.ModelInferRequest()
    assert parse_truncate(req.parameters) == "NONE"
    req.parameters["truncate"].string_param = "End"
    assert parse_truncate(req.parameters) == "END"
    req.parameters["truncate"].int64_param = 3
    with pytest.raises(RerankError):
        parse_truncate(req.parameters)


def test_outputs_are_best_first_with_token_counts_in_input_order():
    result = RankResult(logits=[0.1, 0.9, 0.1], token_counts=[5, 6, 7])
    tensors, contents = encode_outputs(result, [])
    assert [(t.name, t.datatype, list(t.shape)) for t in tensors] == [
        ("index", "INT32", [3, 1]), ("logit", "FP32", [3, 1]), ("token_count", "INT32", [3])]  # fmt: skip
    assert np.frombuffer(contents[0], "<i4").tolist() == [1, 0, 2]
    assert np.frombuffer(contents[1], "<f4").tolist() == pytest.approx([0.9, 0.1, 0.1])
    assert np.frombuffer(contents[2], "<i4").tolist() == [5, 6, 7]
    only_logit, _ = encode_outputs(result, ["logit"])
    assert [t.name for t in only_logit] == ["logit"]
