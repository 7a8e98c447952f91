"""Frames between a worker's Celery process and its engine process, over a local stream socket (a socketpair).

Each frame is a 5-byte header (payload length, little-endian u32; kind, u8) and its payload. Requests carry
their pairs as three flat arrays (lengths, token ids, segment ids), results one float32 per pair: a frame
is one request, never one object per pair. No pickle: JSON for the rare control frames, raw arrays for work.

    SCORE   Celery -> engine  id u64, background u8, deadline f64 (NaN: none), pairs u32, tokens u32,
                              segment ids present u8; lengths int32[pairs], ids int32[tokens], types int8[tokens]
    RESULT  engine -> Celery  id u64, status u8; OK: logits float32[pairs]; EXPIRED: nothing; FAILED: message
    READY   engine -> Celery  JSON: device, dtype, token limit, tokenizer (its tokenizers JSON), load time
    STATS   Celery -> engine  empty: asks for the engine's statistics
    STATS   engine -> Celery  JSON: batch statistics and metric families
    FATAL   engine -> Celery  JSON: why the engine cannot serve (its model failed to load); it exits after it
    CANCEL  Celery -> engine  ids u64[]: requests nobody waits for any more; their pending pairs never run
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from worker.text.tokenization import IDS, TYPES, EncodedPairs

HEADER = struct.Struct("<IB")
_SCORE = struct.Struct("<QBdIIB")
_RESULT = struct.Struct("<QB")
MAX_FRAME = 1 << 27  # 128 MiB: past any READY (its tokenizer's JSON) or RESULT; a longer frame is a broken stream


class Kind(IntEnum):
    SCORE = 1
    RESULT = 2
    READY = 3
    STATS = 4
    FATAL = 5
    CANCEL = 6


class Status(IntEnum):
    OK = 0
    EXPIRED = 1  # the deadline passed before every pair was scored: none of them counts
    FAILED = 2  # the forward pass raised: the message says what happened


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    request_id: int
    pairs: EncodedPairs
    background: bool
    deadline: float | None


@dataclass(frozen=True, slots=True)
class ScoreResult:
    request_id: int
    status: Status
    logits: np.ndarray | None = None  # float32 [pairs] when OK
    message: str = ""


def frame(kind: Kind, *parts: bytes | memoryview) -> bytes:
    payload = b"".join(parts)
    return HEADER.pack(len(payload), kind) + payload


def encode_score(request: ScoreRequest) -> bytes:
    pairs = request.pairs
    deadline = math.nan if request.deadline is None else request.deadline
    head = _SCORE.pack(request.request_id, request.background, deadline, len(pairs.lengths), len(pairs.input_ids),
                       pairs.type_ids is not None)  # fmt: skip
    parts = [head, pairs.lengths.astype(np.int32, copy=False).data, pairs.input_ids.astype(IDS, copy=False).data]
    if pairs.type_ids is not None:
        parts.append(pairs.type_ids.astype(TYPES, copy=False).data)
    return frame(Kind.SCORE, *parts)


@dataclass(frozen=True, slots=True)
class ScoreLimits:
    """What one SCORE frame may carry: at most `max_pairs` pairs of 1 to `max_seq_len` tokens each."""

    max_pairs: int
    max_seq_len: int

    @property
    def max_frame(self) -> int:
        """The longest SCORE payload within these limits (ids int32 and segment ids int8 per token)."""
        return _SCORE.size + 4 * self.max_pairs + 5 * self.max_pairs * self.max_seq_len


_score_limits: ScoreLimits | None = None  # None: a SCORE frame is only checked against its own payload


def limit_score_frames(limits: ScoreLimits | None) -> None:
    """Bound every SCORE frame this process reads (the engine, once its model's limit is known)."""
    global _score_limits
    _score_limits = limits


def decode_score(payload: memoryview) -> ScoreRequest:
    """A SCORE frame's request; ValueError unless its counts agree with its payload (and with the limits):
    every length 1 to L, their sum the token count, the payload exactly the arrays it announces."""
    if len(payload) < _SCORE.size:
        raise ValueError(f"SCORE frame of {len(payload)} bytes is shorter than its header")
    request_id, background, deadline, count, tokens, has_types = _SCORE.unpack_from(payload)
    expected = _SCORE.size + 4 * count + (5 if has_types else 4) * tokens
    if len(payload) != expected or has_types > 1 or background > 1:
        raise ValueError(f"SCORE frame of {len(payload)} bytes announces {count} pairs and {tokens} tokens")
    limits = _score_limits
    if limits is not None and count > limits.max_pairs:
        raise ValueError(f"SCORE frame of {count} pairs; at most {limits.max_pairs} are sent")
    offset = _SCORE.size
    lengths = np.frombuffer(payload, dtype=np.int32, count=count, offset=offset)
    offset += 4 * count
    ids = np.frombuffer(payload, dtype=IDS, count=tokens, offset=offset)
    offset += 4 * tokens
    types = np.frombuffer(payload, dtype=TYPES, count=tokens, offset=offset) if has_types else None
    longest = limits.max_seq_len if limits is not None else tokens
    out_of_range = count and (int(lengths.min()) < 1 or int(lengths.max()) > longest)
    if out_of_range or int(lengths.sum(dtype=np.int64)) != tokens:
        raise ValueError(f"SCORE frame's pair lengths do not add up to its {tokens} tokens within 1 to {longest} each")
    return ScoreRequest(request_id, EncodedPairs(ids, types, lengths), bool(background),
                        None if math.isnan(deadline) else deadline)  # fmt: skip


def encode_result(result: ScoreResult) -> bytes:
    head = _RESULT.pack(result.request_id, result.status)
    if result.status is Status.OK:
        return frame(Kind.RESULT, head, np.asarray(result.logits, dtype="<f4").data)
    return frame(Kind.RESULT, head, result.message.encode())


def decode_result(payload: memoryview) -> ScoreResult:
    request_id, status = _RESULT.unpack_from(payload)
    body = payload[_RESULT.size :]
    if status == Status.OK:
        return ScoreResult(request_id, Status.OK, np.frombuffer(body, dtype="<f4").copy())
    return ScoreResult(request_id, Status(status), message=bytes(body).decode(errors="replace"))


def encode_cancel(request_ids: list[int]) -> bytes:
    return frame(Kind.CANCEL, np.asarray(request_ids, dtype="<u8").data)


def decode_cancel(payload: memoryview) -> list[int]:
    return np.frombuffer(payload, dtype="<u8", count=len(payload) // 8).tolist()


def encode_json(kind: Kind, data: dict) -> bytes:
    return frame(kind, json.dumps(data, separators=(",", ":")).encode())


def decode_json(payload: memoryview) -> dict:
    return json.loads(bytes(payload))


class FrameReader:
    """Splits a byte stream into frames; `feed` what the socket gave, iterate over the complete frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Kind, memoryview]]:
        self._buffer += data
        frames, offset, buffer = [], 0, self._buffer
        while len(buffer) - offset >= HEADER.size:
            length, kind = HEADER.unpack_from(buffer, offset)
            kind = Kind(kind)  # ValueError for a kind that is none
            if length > _max_payload(kind):
                raise ValueError(f"{kind.name} frame of {length} bytes: the stream is broken")
            end = offset + HEADER.size + length
            if end > len(buffer):
                break
            frames.append((kind, memoryview(bytes(buffer[offset + HEADER.size : end]))))
            offset = end
        del buffer[:offset]
        return frames


def _max_payload(kind: Kind) -> int:
    limits = _score_limits
    return limits.max_frame if kind is Kind.SCORE and limits is not None else MAX_FRAME
