"""Abuse limits: token buckets per device (sends, stream events, read calls) and per agent
(group creation)."""

from __future__ import annotations

import time

from ..errors import ResourceExhausted


class Bucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Limiter:
    """Token buckets per device. A rate of 0 turns a limit off."""

    def __init__(
        self,
        sends_per_second: float,
        send_burst: int,
        events_per_second: float,
        event_burst: int,
        reads_per_second: float = 0.0,
        read_burst: int = 1,
        group_creates_per_hour: float = 0.0,
    ) -> None:
        self.send_rate, self.send_burst = sends_per_second, max(1, send_burst)
        self.event_rate, self.event_burst = events_per_second, max(1, event_burst)
        self.read_rate, self.read_burst = reads_per_second, max(1, read_burst)
        self.create_rate, self.create_burst = group_creates_per_hour / 3600.0, max(1, int(group_creates_per_hour))
        self._sends: dict[str, Bucket] = {}
        self._events: dict[str, Bucket] = {}
        self._reads: dict[str, Bucket] = {}
        self._creates: dict[str, Bucket] = {}

    def check_read(self, device: str) -> None:
        if not self.read_rate:
            return
        wait = self._bucket(self._reads, device, self.read_rate, self.read_burst).take()
        if wait:
            raise ResourceExhausted(
                f"device {device!r} makes more than {self.read_rate:g} read calls/s (burst {self.read_burst}); "
                f"retry in {wait:.2f} s",
                reason="READ_RATE_LIMITED",
                metadata={"limit": f"{self.read_rate:g}/s", "burst": str(self.read_burst)},
                retry_after=wait,
            )

    def check_group_create(self, agent: str) -> None:
        if not self.create_rate:
            return
        wait = self._bucket(self._creates, agent, self.create_rate, self.create_burst).take()
        if wait:
            raise ResourceExhausted(
                f"agent {agent!r} created {self.create_burst} groups within the last hour (the limit); "
                f"retry in {wait:.0f} s or join an existing group",
                reason="GROUP_CREATE_RATE_LIMITED",
                metadata={"limit": f"{self.create_burst}/h"},
                retry_after=wait,
            )

    def check_send(self, device: str) -> None:
        if not self.send_rate:
            return
        wait = self._bucket(self._sends, device, self.send_rate, self.send_burst).take()
        if wait:
            raise ResourceExhausted(
                f"device {device!r} sends faster than {self.send_rate:g} messages/s (burst {self.send_burst}); "
                f"retry in {wait:.2f} s",
                reason="SEND_RATE_LIMITED",
                metadata={"limit": f"{self.send_rate:g}/s", "burst": str(self.send_burst)},
                retry_after=wait,
            )

    def check_event(self, device: str) -> None:
        if not self.event_rate:
            return
        wait = self._bucket(self._events, device, self.event_rate, self.event_burst).take()
        if wait:
            raise ResourceExhausted(
                f"device {device!r} sends more than {self.event_rate:g} stream events/s (burst {self.event_burst}); "
                f"slow down and retry in {wait:.2f} s",
                reason="EVENT_RATE_LIMITED",
                metadata={"limit": f"{self.event_rate:g}/s", "burst": str(self.event_burst)},
                retry_after=wait,
            )

    @staticmethod
    def _bucket(table: dict[str, Bucket], device: str, rate: float, burst: int) -> Bucket:
        b = table.get(device)
        if b is None:
            if len(table) > 100_000:
                table.clear()  # bounded memory; buckets refill to full anyway
            b = table[device] = Bucket(rate, burst)
        return b
