"""An ASGI middleware that closes the connection after an answer sent before the request's body was read.

A 401 from the headers alone (api/http/middleware/auth.py), a 413 on the declared length, a 415, a 408 or a
route that never reads the body would otherwise leave the unread rest of the body to the server, which
discards it while keeping the connection alive: a client dripping bytes after its answer held the connection
for as long as it liked, every byte resetting the keep-alive timer. The answer says `Connection: close`, and
uvicorn closes the connection once it is sent.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False


class CloseAfterUnreadBody:
    """Wraps an ASGI app; adds `Connection: close` to an answer that starts before the whole body was received."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _declares_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        body_read = False

        async def noted_receive() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_read:
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, noted_receive, send_closing)
