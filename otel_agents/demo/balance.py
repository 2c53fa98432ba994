"""The fake gateway's quota accounting (:mod:`otel_agents.demo.gateway` stamps it on responses).

Every LLM completion response, success or error, carries the gateway's quota headers: credits,
``X-LiveKit-Inference-Credits-Limit`` and ``-Used``, from a balance the gateway keeps
(:class:`Credits`: ``gateway.credits``, set with :meth:`FakeGateway.set_credits` and
:meth:`FakeGateway.drain_credits`): each completion served costs ``cost`` credits, and once
``used`` reaches ``limit`` the gateway answers every completion with the credits-exhausted 429
(:data:`QUOTA_CREDITS_BODY`) until the balance is set again. They carry the per-minute rate
quotas too, ``X-LiveKit-Inference-{RPM,TPM}-{Limit,Used}`` (:class:`Rates`: ``gateway.rates``):
RPM used counts the completion requests of the current minute, this one included; TPM used, the
tokens of the completions served in it (their ``usage.total_tokens``). The limits are never
enforced: only credits run out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: a new gateway's credit balance, and what each completion served costs
DEFAULT_CREDITS_LIMIT: Final = 1_000_000
DEFAULT_CREDIT_COST: Final = 10
CREDITS_LIMIT_HEADER: Final = "X-LiveKit-Inference-Credits-Limit"
CREDITS_USED_HEADER: Final = "X-LiveKit-Inference-Credits-Used"


@dataclass
class Credits:
    """The gateway's credit balance: ``used`` of ``limit``, ``cost`` more per completion."""

    limit: int = DEFAULT_CREDITS_LIMIT
    used: int = 0
    cost: int = DEFAULT_CREDIT_COST

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    def headers(self) -> dict[str, str]:
        """The quota headers the gateway stamps on an LLM completion response."""
        return {CREDITS_LIMIT_HEADER: str(self.limit), CREDITS_USED_HEADER: str(self.used)}


#: a new gateway's per-minute rate limits (reported, never enforced)
DEFAULT_RPM_LIMIT: Final = 600
DEFAULT_TPM_LIMIT: Final = 200_000
RATE_WINDOW_SECONDS: Final = 60.0
RPM_LIMIT_HEADER: Final = "X-LiveKit-Inference-RPM-Limit"
RPM_USED_HEADER: Final = "X-LiveKit-Inference-RPM-Used"
TPM_LIMIT_HEADER: Final = "X-LiveKit-Inference-TPM-Limit"
TPM_USED_HEADER: Final = "X-LiveKit-Inference-TPM-Used"


@dataclass
class Rates:
    """The gateway's per-minute rate quotas, reported on every LLM completion response.

    ``rpm_used``: the completion requests received in the current minute (past the bearer token
    and body checks, answered or not); ``tpm_used``: the ``usage.total_tokens`` of the
    completions served in it, counted when each answer starts (the prompt's tokens are the
    gateway's rough estimate from the request's size, :func:`wire.usage`). A minute starts with
    the first request after the previous one is over (``clock``: monotonic seconds) or at
    :meth:`new_minute`, so what a test sends in a few seconds falls in one minute and the counts
    are exact. The limits are only reported: the gateway never refuses for them.
    """

    rpm_limit: int = DEFAULT_RPM_LIMIT
    tpm_limit: int = DEFAULT_TPM_LIMIT
    rpm_used: int = 0
    tpm_used: int = 0
    #: when the current minute started (``None``: at the next request)
    started: float | None = None

    def new_minute(self) -> None:
        """Start counting again from zero at the next request."""
        self.rpm_used = self.tpm_used = 0
        self.started = None

    def request(self, now: float) -> None:
        """A completion request arrived at ``now``."""
        if self.started is None or now - self.started >= RATE_WINDOW_SECONDS:
            self.new_minute()
            self.started = now
        self.rpm_used += 1

    def headers(self) -> dict[str, str]:
        """The rate headers the gateway stamps on an LLM completion response."""
        return {
            RPM_LIMIT_HEADER: str(self.rpm_limit),
            RPM_USED_HEADER: str(self.rpm_used),
            TPM_LIMIT_HEADER: str(self.tpm_limit),
            TPM_USED_HEADER: str(self.tpm_used),
        }
