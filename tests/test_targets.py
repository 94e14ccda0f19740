"""Several server addresses for one client: the list, DNS names with several records, order and
cooldowns (agentnet_client/targets.py). End to end failover is in test_replica_faults.py."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from agentnet_client.targets import Target, Targets, split_hostport


def records(*ips: str) -> Any:
    def resolve(host: str, port: int, type: int = 0) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ips]

    return resolve


def test_a_single_address_is_dialled_as_given() -> None:
    t = Targets("vps.example.com:50051", resolve=records("203.0.113.7"))
    assert t.order() == [Target("vps.example.com:50051")]
    assert not t.several


def test_a_comma_list_and_a_name_with_several_records_each_give_addresses() -> None:
    t = Targets("10.0.0.1:50051, agentnet.example.com:6000", resolve=records("10.0.0.2", "10.0.0.3"))
    assert sorted(t.order(), key=lambda x: x.addr) == [
        Target("10.0.0.1:50051"),
        Target("10.0.0.2:6000", "agentnet.example.com"),  # the certificate is checked against the name
        Target("10.0.0.3:6000", "agentnet.example.com"),
    ]
    assert t.several


def test_clients_start_at_different_addresses_and_keep_the_list_order() -> None:
    spec = "10.0.0.1:1,10.0.0.2:1,10.0.0.3:1"
    homes = {Targets(spec, seed=f"device-{i}/agent").home for i in range(30)}
    assert len(homes) == 3
    t = Targets(spec, seed="device-1/agent")
    order = t.order()
    i = [x.addr for x in order].index("10.0.0.1:1")
    assert [x.addr for x in order[i:] + order[:i]] == ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]


def test_a_failed_address_is_avoided_until_it_cools_down() -> None:
    t = Targets("10.0.0.1:1,10.0.0.2:1", seed="x", cooldown=60)
    first = t.pick()
    t.failed(first)
    second = t.pick()
    assert second != first
    t.failed(second)
    assert t.all_cooling()
    assert t.pick() == first  # the one that recovers first
    t.succeeded(first)
    assert t.pick() == first and not t.all_cooling()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [("h:1", ("h", 1)), ("h", ("h", 50051)), ("[::1]:7", ("::1", 7)), ("::1", ("::1", 50051))],
)
def test_addresses_are_parsed(entry: str, expected: tuple[str, int]) -> None:
    assert split_hostport(entry) == expected


def test_a_bad_list_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="port must be a number"):
        Targets("h:x")
    with pytest.raises(ValueError, match="no server address"):
        Targets(" , ")
