"""Request size limits: a body over the limit is refused with a 413 in Podium's error shape."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.api.errors import error_response
from podium.gateway import openai_errors


def too_large_message(max_bytes: int) -> str:
    """What a client that sent too much is told."""
    return (
        f"request body too large: the limit is {max_bytes} bytes ({max_bytes / 1024 / 1024:g} MiB)"
    )


def declared_over(scope: Scope, max_bytes: int) -> bool:
    """The request's ``Content-Length`` says more than ``max_bytes``."""
    declared = Headers(scope=scope).get("content-length")
    return declared is not None and declared.isdigit() and int(declared) > max_bytes


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before the body is read; a body
    without one (chunked) is counted as it arrives, and reading past the limit raises a 413
    ``HTTPException`` that the app's error handlers render.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_over(scope, self.max_bytes):
            message = too_large_message(self.max_bytes)
            if scope["path"].startswith(openai_errors.PATH_PREFIX):
                response = openai_errors.status_response(413, message)
            else:
                response = error_response(413, "ContentTooLarge", message)
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, too_large_message(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)
