"""Whether the served model still works: health checks fail while inference keeps failing.

``kcnn-serve`` checks the model at start-up, but onnxruntime can still fail later for some
inputs or from the device (out of GPU memory, a provider error). Each such request is a 500; after
:data:`FAILURES_IN_A_ROW` failed inference calls in a row, ``GET /v1/health`` and the KServe V2
readiness routes answer 503 so that a load balancer or Kubernetes stops sending traffic. They
answer 200 again after the next successful call, or :data:`RETRY_AFTER_S` seconds after the last
failure (so that an instance taken out of rotation is tried again rather than parked forever).
Client errors (4xx) never count.
"""
from __future__ import annotations

import time

#: Failed inference calls in a row after which the instance reports itself unhealthy.
FAILURES_IN_A_ROW = 3
#: Seconds after the last failure at which the instance reports healthy again.
RETRY_AFTER_S = 30.0


class InferenceHealth:
    """Counts inference failures in a row (see the module doc); ``clock`` is for tests."""

    def __init__(self, failures_in_a_row: int = FAILURES_IN_A_ROW,
                 retry_after_s: float = RETRY_AFTER_S, clock=time.monotonic):
        self.failures_in_a_row, self.retry_after_s, self.clock = failures_in_a_row, retry_after_s, clock
        self.failures = 0
        self.last_failure = None
        self.last_error = ""

    def succeeded(self) -> None:
        """An inference call returned scores."""
        self.failures = 0

    def failed(self, error: BaseException) -> None:
        """An inference call raised ``error`` (not a client's mistake)."""
        self.failures += 1
        self.last_failure = self.clock()
        first_line = str(error).splitlines()[0] if str(error) else ""
        self.last_error = f"{type(error).__name__}: {first_line}"[:300]

    def problem(self) -> str | None:
        """Why the instance is unhealthy now, or None when it is healthy."""
        if self.failures < self.failures_in_a_row:
            return None
        if self.clock() - self.last_failure >= self.retry_after_s:
            return None
        return (f"the last {self.failures} inference calls failed (last error: "
                f"{self.last_error})")
