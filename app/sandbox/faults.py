"""Latency and fault injection for the Flinks API paths, changeable at run time."""

from __future__ import annotations

import enum
import random
from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from app.sandbox.config import SandboxSettings


class Fault(enum.Enum):
    ERROR = "error"  # answer error_status with a Flinks error body, without doing the work
    TIMEOUT = "timeout"  # do the work, then hold the response for timeout_seconds
    DROP = "drop"  # start a response and close the connection, without doing the work


class FaultRates(BaseModel):
    """Latency and fault rates: the sandbox's settings and its run-time config share them."""

    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_status: int = Field(default=500, ge=400, le=599)
    error_code: str = "AGGREGATION_ERROR"
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_seconds: float = Field(default=30.0, ge=0)
    drop_rate: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _rates_fit(self) -> Self:
        if self.error_rate + self.timeout_rate + self.drop_rate > 1:
            raise ValueError("error_rate + timeout_rate + drop_rate must not exceed 1")
        return self


class FaultConfig(FaultRates):
    """What ``GET/PUT /__sandbox/faults`` read and write. Rates are probabilities per request."""

    model_config = ConfigDict(extra="forbid")

    # Canonical endpoint names (e.g. "Authorize", "OAuthAuthorize"); None means every API endpoint.
    endpoints: list[str] | None = None
    # How many more faults to inject (errors, timeouts, drops); None means no limit.
    remaining: int | None = Field(default=None, ge=0)

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> FaultConfig:
        return cls.model_validate(settings.model_dump(include=set(FaultRates.model_fields)))

    @property
    def active(self) -> bool:
        return bool(
            self.latency_ms
            or self.jitter_ms
            or self.error_rate
            or self.timeout_rate
            or self.drop_rate
        )

    def applies_to(self, endpoint: str) -> bool:
        if self.endpoints is None:
            return True
        wanted = endpoint.lower()
        return any(name.lower() == wanted for name in self.endpoints)

    def delay_seconds(self, rng: random.Random) -> float:
        jitter = rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000

    def draw(self, rng: random.Random) -> Fault | None:
        if self.remaining == 0:
            return None
        roll = rng.random()
        fault: Fault | None = None
        if roll < self.drop_rate:
            fault = Fault.DROP
        elif roll < self.drop_rate + self.timeout_rate:
            fault = Fault.TIMEOUT
        elif roll < self.drop_rate + self.timeout_rate + self.error_rate:
            fault = Fault.ERROR
        if fault is not None and self.remaining is not None:
            self.remaining -= 1
        return fault
