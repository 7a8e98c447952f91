"""JSON request bodies for the ranking routes: a large body is parsed off the event loop, and a body that
cannot be read says why (not UTF-8, nested too deeply).

A route class (`JsonBodyRoute`) hands FastAPI a request whose `json()` does this; FastAPI then validates the
result, and the schemas refuse a passage list over RERANK_MAX_PASSAGES on its length (shared/schemas.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Coroutine

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

OFF_LOOP_BYTES = 64 * 1024  # smaller bodies parse in well under a millisecond: a thread hop costs more


class UnreadableBody(HTTPException):
    """A body that is not JSON text at all (400): FastAPI passes an HTTPException from `json()` on as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


def _same_object(value: dict) -> dict:
    # A Python hook per JSON object: json.loads is C code that keeps the GIL for the whole document, and calling
    # back into Python lets the interpreter hand the GIL to the event loop's thread every few milliseconds.
    return value


def parse_json(body: bytes, yielding: bool = False) -> Any:
    """The JSON document in `body`; json.JSONDecodeError for bad syntax (FastAPI: 422), UnreadableBody for bytes
    that are not UTF-8 or nest past the parser's depth."""
    try:
        return json.loads(body, object_hook=_same_object if yielding else None)
    except UnicodeDecodeError:
        raise UnreadableBody("the body is not valid UTF-8") from None
    except RecursionError:
        raise UnreadableBody("the body nests arrays or objects too deeply to be read (a ranking request needs "
                             "at most three levels)") from None  # fmt: skip


class JsonBodyRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > OFF_LOOP_BYTES:
                self._json = await asyncio.to_thread(parse_json, body, True)
            else:
                self._json = parse_json(body)
        return self._json


class JsonBodyRoute(APIRoute):
    """An APIRoute whose handler reads the body through JsonBodyRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def json_body_handler(request: Request) -> Response:
            return await handler(JsonBodyRequest(request.scope, request.receive))

        return json_body_handler
