"""Reading batch-job uploads as they arrive, never whole: push parsers for NDJSON and for JSON.

Each parser is fed the upload piece by piece (`feed`, then `close`) and returns the requests completed so
far: a dict each, or the RerankError that fails that request alone. Parsing is plain CPU work, so
`read_items` runs it off the event loop, a piece at a time. Memory stays at about one piece plus one
request: a line (NDJSON) or a stretch of the body without a complete request (JSON) longer than
`max_request_bytes` (RERANK_MAX_BODY_BYTES) is refused with 413 rather than held. A job needs five levels of
nesting; a body (or a line) nested more than MAX_DEPTH levels is refused as each event arrives, before a parser
builds anything for it (ijson's per-level prefixes would cost memory in the square of the depth).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import AsyncIterator, Protocol

import ijson

from shared.errors import ErrorType, RerankError, shown

Item = dict | RerankError  # a parsed request, or why it could not be read

PIECE_BYTES = 256 * 1024  # upload bytes parsed per hop to a thread
JOB_FIELDS = ("model", "truncate", "requests")
MAX_DEPTH = 16  # levels of nesting in a job's body or an NDJSON line: {"requests": [{"passages": [{...}]}]} is 5


def too_deep(what: str) -> RerankError:
    return RerankError(ErrorType.INVALID_BODY, f"{what} is nested more than {MAX_DEPTH} levels deep")


def too_large(what: str, limit: int) -> RerankError:
    return RerankError(ErrorType.TOO_LARGE, f"{what} over RERANK_MAX_BODY_BYTES ({limit} bytes)")


def _parse_line(line: bytes | bytearray) -> Item:
    try:
        value = json.loads(line.decode("utf-8"))
    except RecursionError:  # nested past the interpreter's limit: json.loads gave up, cheaply
        return too_deep("the line")
    except (UnicodeDecodeError, ValueError):
        return RerankError(ErrorType.INVALID_BODY, "line is not valid UTF-8 JSON")
    if not isinstance(value, dict):
        return RerankError(ErrorType.INVALID_BODY, "line is not a JSON object")
    return value if _depth_within(value, MAX_DEPTH) else too_deep("the line")


def _depth_within(value: object, limit: int) -> bool:
    """Whether `value` (parsed JSON) nests at most `limit` levels of lists and objects."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > limit:
            return False
        level = [child for node in level if isinstance(node, (dict, list))
                 for child in (node.values() if isinstance(node, dict) else node)  # fmt: skip
                 if isinstance(child, (dict, list))]
    return True


class Parser(Protocol):
    def feed(self, data: bytes) -> list[Item]: ...
    def close(self) -> list[Item]: ...


class NdjsonParser:
    """One request per non-empty line. Only the bytes after the last newline are kept and scanned again."""

    def __init__(self, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[Item]:
        scanned = len(self._partial)
        self._partial += data
        items, start = [], 0
        end = self._partial.find(b"\n", scanned)
        while end != -1:
            items += self._line(start, end)
            start = end + 1
            end = self._partial.find(b"\n", start)
        del self._partial[:start]
        if len(self._partial) > self._max:
            raise too_large("a line of the upload", self._max)
        return items

    def _line(self, start: int, end: int) -> list[Item]:
        if end - start > self._max:
            raise too_large("a line of the upload", self._max)
        line = self._partial[start:end]
        return [_parse_line(line)] if line.strip() else []

    def close(self) -> list[Item]:
        items = self._line(0, len(self._partial))
        self._partial.clear()
        return items


class JsonJobParser:
    """`{"model", "truncate", "requests": [...]}`, read by two ijson push parsers over the same bytes: one
    checks the document's shape and depth and reads the job's fields, event by event (`send`, so that it stops
    at the first level too deep), the other builds the requests one at a time, fed a piece only once the first
    has passed it."""

    def __init__(self, max_request_bytes: int) -> None:
        self._max = max_request_bytes
        self._depth = 0
        self._requests = ijson.sendable_list()
        self._shape = ijson.parse_coro(self, use_float=True)
        self._builder = ijson.items_coro(self._requests, "requests.item", use_float=True)  # no Decimal
        self.fields: dict[str, str] = {}
        self.requests_ended = False
        self._since_request = 0  # bytes fed since a request last completed
        self._count = 0
        self._closed = False

    @property
    def settled(self) -> bool:
        """Whether the job's fields can no longer change the requests: both read, or the requests are over."""
        return self.requests_ended or ("model" in self.fields and "truncate" in self.fields)

    def feed(self, data: bytes) -> list[Item]:
        try:
            self._shape.send(data)
            self._builder.send(data)
        except (ijson.JSONError, UnicodeDecodeError):
            raise RerankError(ErrorType.INVALID_BODY, "the body is not valid JSON") from None
        return self._collect(len(data))

    def close(self) -> list[Item]:
        if self._closed:
            return []
        self._closed = True
        try:
            self._shape.close()
            self._builder.close()
        except (ijson.JSONError, UnicodeDecodeError):
            raise RerankError(ErrorType.INVALID_BODY, "the body is not valid JSON") from None
        items = self._collect(0)
        if not self.requests_ended:
            raise RerankError(ErrorType.INVALID_BODY, "requests is required")
        return items

    def job_fields(self) -> tuple[str, str]:
        """The job's model and truncate, checked."""
        model, truncate = self.fields.get("model"), self.fields.get("truncate", "NONE").upper()
        if not model:
            raise RerankError(ErrorType.INVALID_BODY, "model is required")
        if truncate not in ("NONE", "END"):
            raise RerankError(ErrorType.INVALID_BODY, "truncate must be one of 'NONE', 'END'")
        if self.requests_ended and not self._count:
            raise RerankError(ErrorType.INVALID_BODY, "requests must not be empty")
        return model, truncate

    def _collect(self, fed: int) -> list[Item]:
        items = [r if isinstance(r, dict) else RerankError(ErrorType.INVALID_BODY, "not a JSON object")
                 for r in self._requests]  # fmt: skip
        del self._requests[:]
        self._count += len(items)
        self._since_request = 0 if items else self._since_request + fed
        if self._since_request > self._max + PIECE_BYTES:
            raise too_large("a request of the job", self._max)
        return items

    def send(self, event: tuple[str, str, object]) -> None:
        """One event of the shape parser."""
        prefix, kind, value = event
        if kind == "start_map" or kind == "start_array":
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise too_deep("the body")
        elif kind == "end_map" or kind == "end_array":
            self._depth -= 1
        if prefix and prefix.startswith("requests."):
            return  # inside a request: the builder's
        self._check_shape(prefix, kind, value)

    def _check_shape(self, prefix: str, event: str, value) -> None:
        if not prefix:
            if event == "map_key" and value not in JOB_FIELDS:
                raise RerankError(ErrorType.INVALID_BODY, f"{shown(value)} is not a known field")
            if event not in ("start_map", "end_map", "map_key"):
                raise RerankError(ErrorType.INVALID_BODY, "the body must be a JSON object: model, truncate, requests")
        elif prefix in ("model", "truncate"):
            if event != "string":
                raise RerankError(ErrorType.INVALID_BODY, f"{prefix} must be a string")
            self.fields[prefix] = value
        elif prefix == "requests":
            if event not in ("start_array", "end_array"):
                raise RerankError(ErrorType.INVALID_BODY, "requests must be a list")
            self.requests_ended = event == "end_array"


async def pieces(stream: AsyncIterator[bytes], max_upload_bytes: int) -> AsyncIterator[bytes]:
    """The upload in pieces of about PIECE_BYTES, refused once it passes `max_upload_bytes`."""
    buffer, received = bytearray(), 0
    async for data in stream:
        received += len(data)
        if received > max_upload_bytes:
            raise RerankError(ErrorType.TOO_LARGE, f"upload over RERANK_JOB_MAX_UPLOAD_BYTES ({max_upload_bytes} bytes)")
        buffer += data
        if len(buffer) >= PIECE_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


async def read_items(parser: Parser, upload: AsyncIterator[bytes]) -> AsyncIterator[Item]:
    """Every request of `upload` (pieces), parsed off the event loop."""
    async for piece in upload:
        for item in await asyncio.to_thread(parser.feed, piece):
            yield item
    for item in await asyncio.to_thread(parser.close):
        yield item


class Spool:
    """Requests read before the job's fields were known, held as NDJSON in memory up to a few MiB, then in a file
    of `directory` (None: the system's temporary directory), refused with 413 past `max_bytes`."""

    def __init__(self, max_request_bytes: int, max_bytes: int, directory: Path | None = None) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024, dir=directory)
        self._max = max_request_bytes
        self._max_bytes = max_bytes
        self._size = 0

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *_) -> None:
        self._file.close()

    def extend(self, items: list[Item]) -> None:
        for item in items:
            line = b"null\n" if isinstance(item, RerankError) else json.dumps(item).encode() + b"\n"
            self._size += len(line)
            if self._size > self._max_bytes:
                raise RerankError(ErrorType.TOO_LARGE, f"requests before the job's model and truncate over "
                                  f"RERANK_JOB_MAX_SPOOL_BYTES ({self._max_bytes} bytes): send model and truncate "
                                  "before requests")  # fmt: skip
            self._file.write(line)

    async def replay(self) -> AsyncIterator[Item]:
        self._file.seek(0)

        async def stored() -> AsyncIterator[bytes]:
            while piece := await asyncio.to_thread(self._file.read, PIECE_BYTES):
                yield piece

        async for item in read_items(NdjsonParser(self._max), stored()):
            yield item
        self._file.close()
