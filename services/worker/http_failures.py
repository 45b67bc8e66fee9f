"""What an HTTP error from a provider means for a step: its failure kind, and a short detail
safe to log. Model calls and search tools answer in the same taxonomy."""

import json

from schemas.events import FailureKind

_QUOTA_CODES = ("insufficient_quota", "billing_hard_limit_reached", "quota")
_DETAIL_CHARS = 300


def classify(status: int, body: str) -> FailureKind:
    """The failure kind of an HTTP error status (and its body, which tells a 429 for being
    out of quota from a 429 for going too fast)."""
    if status == 429:
        return FailureKind.QUOTA if _names_quota(body) else FailureKind.RATE_LIMITED
    if status in (401, 403):
        return FailureKind.AUTH
    if status == 402:
        return FailureKind.QUOTA
    if status == 408:
        return FailureKind.TIMEOUT
    if status >= 500:
        return FailureKind.SERVER
    return FailureKind.UPSTREAM


def _names_quota(body: str) -> bool:
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        return False
    if not isinstance(error, dict):
        return False
    return any(code in str(error.get(k, "")) for k in ("code", "type") for code in _QUOTA_CODES)


def scrub(text: str, secret: str | None) -> str:
    """``text`` shortened for a message, without the secret in it."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return text[:_DETAIL_CHARS]
