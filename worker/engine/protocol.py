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
MAX_FRAME = 1 << 31  # a frame this long is a broken stream, not a request


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


def decode_score(payload: memoryview) -> ScoreRequest:
    request_id, background, deadline, count, tokens, has_types = _SCORE.unpack_from(payload)
    offset = _SCORE.size
    lengths = np.frombuffer(payload, dtype=np.int32, count=count, offset=offset)
    offset += 4 * count
    ids = np.frombuffer(payload, dtype=IDS, count=tokens, offset=offset)
    offset += 4 * tokens
    types = np.frombuffer(payload, dtype=TYPES, count=tokens, offset=offset) if has_types else None
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
            if length >= MAX_FRAME:
                raise ValueError(f"frame of {length} bytes: the stream is broken")
            end = offset + HEADER.size + length
            if end > len(buffer):
                break
            frames.append((Kind(kind), memoryview(bytes(buffer[offset + HEADER.size : end]))))
            offset = end
        del buffer[:offset]
        return frames
