"""The replica's serving state machine (agentnet_server.health.Readiness) on its own: the store
side is plain callables here; the fault tests (test_replica_faults.py) drive it for real."""

from __future__ import annotations

import asyncio

from tests.conftest import until


async def test_a_loss_while_serving_is_being_announced_is_recovered_from() -> None:
    """The store is lost again while the recovery announces SERVING (a set_serving that yields):
    the replica must not stay out of service with nobody recovering it."""
    from agentnet_server.health import Readiness

    announced: list[bool] = []
    resyncs = 0

    async def ping() -> None:
        return None

    async def resync() -> None:
        nonlocal resyncs
        resyncs += 1

    async def set_serving(serving: bool) -> None:
        announced.append(serving)
        if serving and resyncs == 1:
            readiness.lost("writer")  # the next loss lands while this announcement is under way
        await asyncio.sleep(0)

    readiness = Readiness(ping, resync, set_serving, lambda: 0, grace=30.0)
    await readiness.serving()
    readiness.lost("reader")
    try:
        await until(lambda: resyncs == 2 and readiness.ready, timeout=5)
        assert announced[-1] is True and readiness.reason == "ready"
    finally:
        await readiness.stop()
