"""The engine checks every SCORE frame against its own payload and the limits before it queues a pair."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from worker.engine import protocol
from worker.engine.protocol import Kind, ScoreLimits, ScoreRequest
from worker.text.tokenization import EncodedPairs

SCORE_HEAD = struct.Struct("<QBdIIB")


@pytest.fixture(autouse=True)
def limits():
    protocol.limit_score_frames(ScoreLimits(max_pairs=4, max_seq_len=8))
    yield
    protocol.limit_score_frames(None)


def score_payload(lengths, tokens=None, *, count=None, types=False, extra=b"") -> memoryview:
    lengths = np.asarray(lengths, dtype=np.int32)
    tokens = int(lengths.sum()) if tokens is None else tokens
    ids = np.arange(tokens, dtype=np.int32)
    head = SCORE_HEAD.pack(7, 0, float("nan"), len(lengths) if count is None else count, tokens, types)
    body = head + lengths.tobytes() + ids.tobytes() + (np.zeros(tokens, np.int8).tobytes() if types else b"")
    return memoryview(body + extra)


def test_a_well_formed_frame_round_trips():
    pairs = EncodedPairs(np.arange(7, dtype=np.int32), np.zeros(7, np.int8), np.array([3, 4], np.int32))
    frame = protocol.encode_score(ScoreRequest(1, pairs, False, 12.5))
    [(kind, payload)] = protocol.FrameReader().feed(frame)
    decoded = protocol.decode_score(payload)
    assert kind is Kind.SCORE and decoded.pairs.lengths.tolist() == [3, 4] and decoded.deadline == 12.5


@pytest.mark.parametrize(
    "payload",
    [
        score_payload([3, 4], tokens=9),  # lengths add up to fewer tokens than it carries
        score_payload([3, 4], tokens=5),  # ... or to more
        score_payload([0, 7]),  # an empty pair
        score_payload([-1, 8]),  # a negative length that keeps the sum right
        score_payload([9]),  # a pair over L
        score_payload([1] * 5),  # more pairs than a request may hold
        score_payload([3, 4], count=3),  # counts past the payload
        score_payload([3, 4], extra=b"\0"),  # bytes past what it announces
        memoryview(b"\0" * 10),  # shorter than its header
    ],
    ids=["sum-low", "sum-high", "empty-pair", "negative", "over-L", "too-many-pairs", "count-past-payload",
         "trailing-bytes", "short-header"],  # fmt: skip
)
def test_a_frame_whose_counts_disagree_with_its_payload_is_refused(payload):
    with pytest.raises(ValueError):
        protocol.decode_score(payload)


def test_a_score_frame_longer_than_the_limits_allow_is_a_broken_stream():
    longest = ScoreLimits(max_pairs=4, max_seq_len=8).max_frame
    with pytest.raises(ValueError, match="broken"):
        protocol.FrameReader().feed(protocol.HEADER.pack(longest + 1, Kind.SCORE))
    with pytest.raises(ValueError):
        protocol.FrameReader().feed(protocol.HEADER.pack(4, 99))  # no such kind
    assert protocol.MAX_FRAME <= 1 << 27
