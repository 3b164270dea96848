"""OpenAI-shaped errors for the ``/v1`` routes: :class:`InvalidRequest` (a 400 before anything is
admitted), :class:`WireError` (status, OpenAI's error object, headers) and :func:`wire_error`,
which implements the status table in :mod:`podium.gateway.server`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starlette.responses import JSONResponse

from podium.errors import (
    AuthenticationFailed,
    BadModelRequest,
    CapabilityUnsupported,
    ConfigError,
    ContentRefused,
    ContextLengthExceeded,
    LocalModelUnavailable,
    ModelError,
    ModelNotFound,
    PodiumError,
    ProviderTimeout,
    RateLimited,
    RateLimitExceeded,
)
from podium.finops.budgets import BudgetExceeded
from podium.gateway.records import new_request_id
from podium.gateway.resilience import CallFailed
from podium.gateway.routing import NoDeploymentAvailable
from podium.models.catalog import money

MAX_EMBED_INPUTS = 2048
"""Inputs one embeddings request may carry (OpenAI's limit)."""
MAX_STOP = 4
"""Stop sequences one request may carry (OpenAI's limit)."""
FLAG_SCORE = 0.5
"""A moderation category reads ``true`` when its input is flagged and scores at least this."""


class InvalidRequest(PodiumError):
    """The request is not valid OpenAI wire format, or asks for what the gateway cannot do.

    Answered with a 400 before anything is admitted, routed or billed.
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code or "invalid_value"


# -- errors ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireError:
    """A failure as the client sees it: the status, OpenAI's error object, and headers."""

    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    """Seconds, sent as ``Retry-After`` (rounded up)."""
    retryable: bool | None = None
    """Sent as ``x-should-retry`` (which the OpenAI SDKs obey) when not ``None``."""

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, code=self.code, param=self.param)

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.retry_after is not None:
            out["retry-after"] = str(max(0, math.ceil(self.retry_after)))
        if self.retryable is not None:
            out["x-should-retry"] = "true" if self.retryable else "false"
        return out


def error_body(
    message: str, type: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


_BY_STATUS: Mapping[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "budget_exceeded"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def status_error(status: int, message: str) -> WireError:
    """An HTTP-level refusal (a bad token, a missing permission, a body too large…)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    typ, code = _BY_STATUS.get(status, (kind, None))
    return WireError(status, typ, message, code)


PATH_PREFIX = "/v1/"
"""Requests under this path are answered in OpenAI's shape, refusals of middleware included."""


def status_response(
    status: int, message: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An HTTP-level refusal in OpenAI's shape, for middleware that answers a request under
    :data:`PATH_PREFIX` before any route (a bad token, a body too large)."""
    error = status_error(status, message)
    # Every /v1 answer has a request id, a refusal before any route included.
    ids = {"x-request-id": new_request_id()}
    return JSONResponse(
        error.body(), status_code=status, headers={**error.headers(), **ids, **(headers or {})}
    )


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _tried(failure: CallFailed) -> str:
    tried = [a for a in failure.attempts if a.outcome != "skipped"]
    n, d = len(tried), len({a.deployment for a in tried})
    return f" (after {n} attempt{'s' * (n != 1)} on {d} deployment{'s' * (d != 1)})"


def _budget(exc: BudgetExceeded, now: float) -> WireError:
    remaining = max(Decimal(0), exc.limit - exc.spent - exc.reserved)
    resets = "it never resets"
    retry_after: float | None = None
    if exc.window_end is not None:
        resets = f"it resets at {exc.window_end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        retry_after = max(0.0, exc.window_end.timestamp() - now)
    message = (
        f"budget {exc.budget_id!r} ({exc.scope} {exc.value!r}) cannot take this call: "
        f"${money(remaining)} of its ${money(exc.limit)} limit remains "
        f"(${money(exc.spent)} spent, ${money(exc.reserved)} held by calls in flight) and this "
        f"call may cost up to ${money(exc.requested)}; {resets}"
    )
    return WireError(
        402,
        "insufficient_quota",
        message,
        "budget_exceeded",
        retry_after=retry_after,
        retryable=False,
    )


def _model_error(exc: ModelError, suffix: str = "") -> WireError:
    """A model's or a provider's failure (after the gateway's retries and fallbacks)."""
    text = f"{exc}{suffix}"
    invalid = "invalid_request_error"
    if isinstance(exc, ContextLengthExceeded):
        return WireError(400, invalid, text, "context_length_exceeded", "messages", None, False)
    if isinstance(exc, ContentRefused):
        return WireError(400, invalid, text, "content_filter", None, None, False)
    if isinstance(exc, CapabilityUnsupported):
        return WireError(400, invalid, text, "unsupported_capability", "model", None, False)
    if isinstance(exc, BadModelRequest):
        return WireError(400, invalid, text, "invalid_value", None, None, False)
    if isinstance(exc, ModelNotFound):
        # The provider does not know a model the gateway routes to: the gateway's fault.
        return WireError(502, "upstream_error", text, "upstream_model_not_found")
    if isinstance(exc, RateLimited):
        return WireError(
            429, "rate_limit_error", text, "rate_limit_exceeded", None, exc.retry_after
        )
    if isinstance(exc, ProviderTimeout):
        return WireError(504, "timeout", text, "provider_timeout")
    if isinstance(exc, LocalModelUnavailable):
        return WireError(503, "service_unavailable", text, "model_unavailable", None, None, False)
    if isinstance(exc, AuthenticationFailed):
        # The gateway's key for the provider failed, not the client's: never a 401.
        return WireError(502, "upstream_error", text, "upstream_authentication_failed")
    return WireError(502, "upstream_error", text, "upstream_error")


def wire_error(exc: BaseException, *, now: float, retry_in: float | None = None) -> WireError:
    """The client's view of a failure (the table in :mod:`podium.gateway.server`).

    Args:
        exc: What the request's validation or the call path raised.
        now: Wall-clock seconds (the ``Retry-After`` of a budget is its window's end).
        retry_in: For :class:`NoDeploymentAvailable`, seconds until an excluded deployment
            takes calls again (an open breaker's cooldown), when known.
    """
    if isinstance(exc, InvalidRequest):
        return WireError(400, "invalid_request_error", str(exc), exc.code, exc.param, None, False)
    if isinstance(exc, BudgetExceeded):
        return _budget(exc, now)
    if isinstance(exc, RateLimitExceeded):
        # retry_after None: the request alone is over the limit, and waiting will not help.
        never = exc.retry_after is None
        return WireError(
            429,
            "rate_limit_error",
            str(exc),
            "rate_limit_exceeded",
            None,
            exc.retry_after,
            False if never else None,
        )
    if isinstance(exc, NoDeploymentAvailable):
        if exc.excluded and all(e.kind == "request" for e in exc.excluded):
            # Every deployment is too small or lacks a capability: the client must change it.
            return WireError(
                400, "invalid_request_error", str(exc), "no_deployment_fits", None, None, False
            )
        transient = bool(exc.excluded) and all(e.transient for e in exc.excluded)
        return WireError(
            503,
            "service_unavailable",
            str(exc),
            "no_deployment_available",
            None,
            retry_in if transient else None,
            transient,
        )
    if isinstance(exc, CallFailed):
        return _model_error(exc.last_error, _tried(exc))
    if isinstance(exc, ModelNotFound):
        return WireError(
            404, "invalid_request_error", str(exc), "model_not_found", "model", None, False
        )
    if isinstance(exc, ModelError):
        return _model_error(exc)
    from podium.governance.keys import AuditError  # governance imports the gateway
    from podium.governance.policy import PolicyDenied

    if isinstance(exc, PolicyDenied):
        return WireError(403, "permission_error", str(exc), "policy_denied", None, None, False)
    if isinstance(exc, AuditError):
        return WireError(503, "service_unavailable", str(exc), "audit_unavailable")
    if isinstance(exc, ConfigError):
        return WireError(
            500, "server_error", f"the gateway is misconfigured: {exc}", "configuration_error"
        )
    if isinstance(exc, PodiumError):
        return WireError(400, "invalid_request_error", str(exc), _snake(type(exc).__name__))
    return WireError(500, "server_error", "internal server error; see the server log")
