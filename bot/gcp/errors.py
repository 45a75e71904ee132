"""What a google-api-core error means, in the short reasons the ports speak."""

from __future__ import annotations


def api_error_reason(error: BaseException) -> str:
    from google.api_core import exceptions

    reasons: list[tuple[type[Exception], str]] = [
        (exceptions.NotFound, "not_found"),
        (exceptions.FailedPrecondition, "failed_precondition"),
        (exceptions.BadRequest, "invalid_argument"),
        (exceptions.Unauthorized, "unauthenticated"),
        (exceptions.Forbidden, "permission_denied"),
        (exceptions.MethodNotImplemented, "unimplemented"),
        (exceptions.TooManyRequests, "unavailable"),
        (exceptions.ServerError, "unavailable"),  # includes 503 and 504 (deadline exceeded)
    ]
    for kind, reason in reasons:
        if isinstance(error, kind):
            return reason
    return "api_error"


def describe(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return f"{type(error).__name__}: {message}"
