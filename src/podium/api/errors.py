"""How failures become HTTP responses: one JSON shape, a status per error class, no tracebacks.

Every error body is ``{"error": {"type", "message", ...}}``. Podium's own errors map by class:

=====================  ======  ==========================================================
``DefinitionError``    422     ``issues`` lists every located problem (file, line, hint…)
``RunNotFound``        404     ``run_id``
``JournalConflict``    409     another writer raced on the run
``WorkflowError``      409     the run is not in a state that allows this (``run_id``,
                               ``step``), e.g. approving a step that is not waiting
``ConfigError``        500     the server is misconfigured
``StoreError``         500     the store failed
``ModelError``         502     a model provider failed
``PolicyDenied``       403     the central policy refuses it (policy id, version, rule)
``AuditError``         503     the audit record could not be written: the call fails closed
other ``PodiumError``  400
=====================  ======  ==========================================================

Anything else is a bug: the client gets a 500 with a generic message, the server log gets the
traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from podium.errors import (
    ConfigError,
    DefinitionError,
    JournalConflict,
    ModelError,
    PodiumError,
    RunNotFound,
    StoreError,
    WorkflowError,
)

_STATUS: tuple[tuple[type[PodiumError], int], ...] = (
    # Most specific first: the first class an error is an instance of decides.
    (DefinitionError, 422),
    (RunNotFound, 404),
    (JournalConflict, 409),
    (WorkflowError, 409),
    (ConfigError, 500),
    (StoreError, 500),
    (ModelError, 502),
)


class ErrorIssue(BaseModel):
    """One problem: a located workflow-definition issue, or one invalid request field."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    key: str | None = None
    """Where in the definition (``steps.0.call``) or the request (``body.inputs``)."""
    hint: str | None = None


class ErrorDetail(BaseModel):
    """What went wrong."""

    model_config = ConfigDict(extra="allow")

    type: str
    """The error class (``RunNotFound``) or HTTP reason (``Unauthorized``)."""
    message: str
    issues: list[ErrorIssue] | None = None
    run_id: str | None = None
    step: str | None = None


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or invalid bearer token"},
    403: {"model": ErrorResponse, "description": "The token lacks the route's permission"},
    413: {"model": ErrorResponse, "description": "Request body over the size limit"},
    422: {"model": ErrorResponse, "description": "Invalid request or workflow inputs"},
}
"""Error responses every protected route may give, for the OpenAPI spec."""


class ApiError(Exception):
    """An HTTP-level refusal that is not a Podium error (unknown workflow, bad token…)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type or _reason(status)
        self.message = message
        self.headers = dict(headers or {})


_REASONS = {413: "ContentTooLarge"}
"""RFC 9110 names that older Pythons' ``HTTPStatus`` spell differently."""


def _reason(status: int) -> str:
    if status in _REASONS:
        return _REASONS[status]
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return "Error"


def error_response(
    status: int,
    type: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A JSON error response in Podium's shape."""
    detail = ErrorDetail(type=type, message=message, **extra)
    body = ErrorResponse(error=detail).model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def status_of(exc: PodiumError) -> int:
    """The HTTP status a Podium error maps to."""
    from podium.governance.keys import AuditError  # governance imports the gateway
    from podium.governance.policy import PolicyDenied

    if isinstance(exc, PolicyDenied):
        return 403
    if isinstance(exc, AuditError):
        return 503
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def podium_error_response(exc: PodiumError) -> JSONResponse:
    """Render a Podium error (see the table in this module's docstring)."""
    extra: dict[str, Any] = {}
    if isinstance(exc, DefinitionError):
        extra["issues"] = [
            ErrorIssue(
                message=i.message,
                file=i.file,
                line=i.line,
                column=i.column,
                key=i.key,
                hint=i.hint,
            )
            for i in exc.issues
        ]
    if isinstance(exc, RunNotFound | WorkflowError):
        extra["run_id"] = exc.run_id
    if isinstance(exc, WorkflowError):
        extra["step"] = exc.step_id
    return error_response(status_of(exc), type(exc).__name__, str(exc), **extra)


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure of ``app`` answer in Podium's error shape."""

    async def on_podium_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PodiumError)
        return podium_error_response(exc)

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.type, exc.message, headers=exc.headers)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(
            exc.status_code, _reason(exc.status_code), str(exc.detail), headers=exc.headers
        )

    async def on_invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        issues = [
            ErrorIssue(
                message=str(err.get("msg", "invalid")),
                key=".".join(str(p) for p in err.get("loc", ())) or None,
            )
            for err in exc.errors()
        ]
        summary = "; ".join(f"{i.key}: {i.message}" if i.key else i.message for i in issues)
        return error_response(
            422, "RequestValidationError", f"invalid request: {summary}", issues=issues
        )

    async def on_bug(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this response, so the server logs the traceback.
        return error_response(
            500, "InternalServerError", "internal server error; see the server log"
        )

    app.add_exception_handler(PodiumError, on_podium_error)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(Exception, on_bug)
