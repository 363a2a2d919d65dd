"""Small HTTP helpers shared by every client that talks to a public service."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from datetime import timezone
from typing import TypeVar

import tenacity

T = TypeVar("T")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Retryable(Exception):
    """A failure worth another try; retry_after is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.retry_after = retry_after


def call_with_retries(attempt: Callable[[], T], *, max_retries: int, backoff_s: float,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """attempt(), tried again on Retryable up to max_retries times, each wait the longer of an
    exponential backoff and the server's Retry-After; the last Retryable is re-raised."""

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return max(backoff_s * 2 ** (state.attempt_number - 1), getattr(exc, "retry_after", None) or 0.0)

    return tenacity.Retrying(stop=tenacity.stop_after_attempt(max_retries + 1), wait=wait,
                             retry=tenacity.retry_if_exception_type(Retryable), sleep=sleep, reraise=True)(attempt)
