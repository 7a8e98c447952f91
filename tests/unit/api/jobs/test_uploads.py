"""The batch-job upload parsers, fed piece by piece as the upload arrives."""

from __future__ import annotations

import json

import pytest

from api.jobs.uploads import JsonJobParser, NdjsonParser
from shared.errors import ErrorType, RerankError


def _feed(parser, data: bytes, piece: int = 7) -> list:
    items = []
    for start in range(0, len(data), piece):
        items += parser.feed(data[start : start + piece])
    return items + parser.close()


def test_ndjson_lines_split_across_pieces():
    lines = [{"query": {"text": f"q{i}"}, "n": i} for i in range(20)]
    items = _feed(NdjsonParser(1000), b"".join(json.dumps(line).encode() + b"\n\n" for line in lines))
    assert items == lines


def test_ndjson_bad_lines_fail_alone_and_a_line_past_the_limit_is_refused():
    items = _feed(NdjsonParser(1000), b'{"a": 1}\nnot json\n[1]\n{"b": 2}')
    assert items[0] == {"a": 1} and items[3] == {"b": 2}
    assert all(isinstance(item, RerankError) for item in items[1:3])
    with pytest.raises(RerankError) as refused:
        _feed(NdjsonParser(100), b"x" * 500, piece=64)
    assert refused.value.type is ErrorType.TOO_LARGE


def test_json_requests_come_one_by_one_with_numbers_as_numbers():
    body = json.dumps({"model": "m", "truncate": "end", "requests": [{"top_n": 2, "x": 1.5}, [1], {"k": True}]})
    parser = JsonJobParser(1000)
    items = _feed(parser, body.encode())
    assert items[0] == {"top_n": 2, "x": 1.5} and isinstance(items[1], RerankError) and items[2] == {"k": True}
    assert parser.job_fields() == ("m", "END")


@pytest.mark.parametrize("body, message", [
    (b'{"model": "m", "requests": [], "colour": 1}', "'colour' is not a known field"),
    (b'[{"model": "m"}]', "must be a JSON object"),
    (b'{"model": 3, "requests": [{}]}', "model must be a string"),
    (b'{"model": "m", "requests": {"a": 1}}', "requests must be a list"),
    (b'{"model": "m", "requests": [{}]', "not valid JSON"),
    (b'{"model": "m"}', "requests is required"),
])  # fmt: skip
def test_json_shape_errors(body, message):
    with pytest.raises(RerankError) as refused:
        _feed(JsonJobParser(1000), body)
    assert message in refused.value.message


def test_a_json_request_past_the_limit_is_refused():
    body = json.dumps({"model": "m", "requests": [{"query": {"text": "q" * 600_000}}]}).encode()
    with pytest.raises(RerankError) as refused:
        _feed(JsonJobParser(100_000), body, piece=65536)
    assert refused.value.type is ErrorType.TOO_LARGE


def test_nesting_is_bounded_in_json_bodies_and_ndjson_lines():
    deepest = {"q": [[[[[[[[[[[[[[1]]]]]]]]]]]]]]}  # 16 levels: taken
    body = json.dumps({"model": "m", "requests": [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]}).encode()  # 17
    with pytest.raises(RerankError) as refused:
        _feed(JsonJobParser(1000), body)
    assert refused.value.message == "the body is nested more than 16 levels deep"
    items = _feed(JsonJobParser(1000), json.dumps({"model": "m", "requests": [deepest["q"][0]]}).encode())
    assert items and isinstance(items[0], RerankError) and items[0].message == "not a JSON object"  # not too deep
    lines = json.dumps(deepest).encode() + b"\n" + json.dumps({"q": [deepest]}).encode() + b"\n" + b"[" * 5000
    taken, too_deep, past_recursion = _feed(NdjsonParser(100_000), lines)
    assert taken == deepest
    assert too_deep.message == past_recursion.message == "the line is nested more than 16 levels deep"
