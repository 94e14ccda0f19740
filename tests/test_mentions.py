"""Mention parsing rules (pure functions; the end-to-end behaviour is in test_collab.py)."""

from __future__ import annotations

import pytest

from agentnet_server.domain.mentions import Resolver, resolve_explicit, scan

MEMBERS = {
    "laoxing": "laoxing",
    "老邢": "laoxing",
    "xiaoxing-mac": "xiaoxing-mac",
    "小邢": "xiaoxing-mac",
    "bob": "bob",
    "Bob Smith": "bobs",
    "bobs": "bobs",
}
KNOWN = {**MEMBERS, "小金": "xiaojin", "xiaojin": "xiaojin"}


def found(text: str) -> tuple[tuple[str, ...], bool, tuple[str, ...]]:
    f = scan(text, Resolver(MEMBERS), Resolver(KNOWN))
    return f.agents, f.everyone, f.unresolved


@pytest.mark.parametrize(
    ("text", "agents"),
    [
        ("@小邢 请看一下", ("xiaoxing-mac",)),
        ("@小邢，部署好了吗", ("xiaoxing-mac",)),
        ("好的@老邢:收到", ("laoxing",)),
        ("@小邢请看", ("xiaoxing-mac",)),
        ("cc @xiaoxing-mac.", ("xiaoxing-mac",)),
        ("(@bob) and @BOB again", ("bob",)),
        ("@Bob Smith has the keys", ("bobs",)),
        ("@bob smith, @laoxing", ("bobs", "laoxing")),
        ("@ＬＡＯＸＩＮＧ wide letters", ("laoxing",)),
    ],
)
def test_resolves(text: str, agents: tuple[str, ...]) -> None:
    assert found(text)[0] == agents


def test_email_addresses_and_code_are_not_mentions() -> None:
    assert found("mail bob@example.com or laoxing@x.io") == ((), False, ())
    assert found("run `echo @bob` then\n```\n@laoxing inside a fence\n```\n") == ((), False, ())
    assert found("`@bob` but @小邢 outside")[0] == ("xiaoxing-mac",)


def test_word_boundaries_for_ascii_names() -> None:
    agents, _, unresolved = found("@bobby is not bob, @bob.smith neither")
    assert agents == () and unresolved == ("@bobby", "@bob.smith")


def test_everyone_and_unresolved() -> None:
    assert found("@all standup in 5")[1] is True
    assert found("@所有人 开会")[1] is True
    agents, _, unresolved = found("@小金 is not in this group, @nobody exists")
    assert agents == () and unresolved == ("@小金", "@nobody")


def test_explicit_list() -> None:
    assert resolve_explicit(["小邢", "@laoxing", "ghost"], MEMBERS) == (["xiaoxing-mac", "laoxing"], ["ghost"])
