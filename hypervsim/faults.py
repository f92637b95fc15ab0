"""Faults a test can switch on a simulated host at run time: latency, dropped connections, errors, slowness.

Counts are consumed as requests arrive, so `h.faults.http_500 = 2` answers the next two requests with HTTP 500.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


class ConnectionDrop(Exception):
    """Close the client's TCP connection without answering (an injected network failure)."""


@dataclass
class Faults:
    latency: float = 0.0  # seconds added before every HTTP response
    drop_on_request: int | None = None  # close the TCP connection on the Nth request from now (once)
    drop_on_cmdlet: str | None = None  # close the TCP connection when a pipeline with this cmdlet arrives
    http_500: int = 0  # answer this many requests with a bare HTTP 500
    wsman_fault: int = 0  # answer this many WSMan requests with a WSMan fault
    unauthorized_after: int | None = None  # after N more requests, every request gets 401 until cleared
    slow_cmdlet: tuple[str, float] | None = None  # (cmdlet name, seconds) the cmdlet takes before it runs
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def clear(self) -> None:
        with self._lock:
            self.latency = 0.0
            self.drop_on_request = self.drop_on_cmdlet = self.unauthorized_after = self.slow_cmdlet = None
            self.http_500 = self.wsman_fault = 0

    def on_request(self) -> str | None:
        """Count one HTTP request; returns the fault it triggers: "drop", "unauthorized" or None."""
        with self._lock:
            if self.drop_on_request is not None:
                self.drop_on_request -= 1
                if self.drop_on_request <= 0:
                    self.drop_on_request = None
                    return "drop"
            if self.unauthorized_after is not None:
                if self.unauthorized_after <= 0:
                    return "unauthorized"
                self.unauthorized_after -= 1
        return None

    def take_http_500(self) -> bool:
        # Consumed once the request is authenticated and decrypted, as when Windows fails behind its listener,
        # so the message-encryption sequence of client and host stays in step.
        with self._lock:
            if self.http_500 > 0:
                self.http_500 -= 1
                return True
        return False

    def take_wsman_fault(self) -> bool:
        with self._lock:
            if self.wsman_fault > 0:
                self.wsman_fault -= 1
                return True
        return False

    def drops_pipeline(self, cmdlets: list[str]) -> bool:
        target = self.drop_on_cmdlet
        return target is not None and any(name.lower() == target.lower() for name in cmdlets)

    def delay_for(self, cmdlet: str) -> float:
        slow = self.slow_cmdlet
        return slow[1] if slow is not None and slow[0].lower() == cmdlet.lower() else 0.0
