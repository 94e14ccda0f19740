"""Find @mentions in message text: ids and display names in any script, longest match first.

Rules: an '@' right after an ASCII letter, digit or one of ._%+- is part of an e-mail address
and ignored; text inside `code` spans and ``` fences is ignored; a name that ends in an ASCII
word character must not be followed by one (so "@bob" does not match inside "@bobby"), while
names in scripts without spaces ("@小邢请看") match directly. "@all", "@everyone" and "@所有人"
mention every member.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable

ALL_WORDS = ("all", "everyone", "所有人", "全体成员")
_EMAIL_LEFT = re.compile(r"[A-Za-z0-9._%+\-]")
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)
_ASCII_WORD = re.compile(r"[A-Za-z0-9_]")


@dataclasses.dataclass(frozen=True)
class Found:
    """Mentions found in a text: agent ids, whether @all was used, and what did not resolve."""

    agents: tuple[str, ...]
    everyone: bool
    unresolved: tuple[str, ...]


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _mask_code(text: str) -> str:
    return _CODE.sub(lambda m: " " * len(m.group(0)), text)


def _token_end(text: str, start: int) -> int:
    """End of a bare @token: up to whitespace or punctuation (for reporting unresolved names)."""
    i = start
    while i < len(text):
        cat = unicodedata.category(text[i])
        if text[i].isspace() or (cat[0] in "PS" and text[i] not in "._-"):
            break
        i += 1
    # A trailing '.' or '-' is sentence punctuation, not part of the name.
    while i > start and text[i - 1] in ".-_":
        i -= 1
    return i


class Resolver:
    """Resolves mentions against a set of names (id or display name -> agent id)."""

    def __init__(self, names: dict[str, str]) -> None:
        # key -> agent id, grouped by length so the longest candidate is tried first.
        self._names: dict[str, str] = {}
        for name, agent in names.items():
            self._names.setdefault(_key(name), agent)
        for word in ALL_WORDS:
            self._names.setdefault(_key(word), "*")
        self._lengths = sorted({len(k) for k in self._names}, reverse=True)

    def match(self, text: str, pos: int) -> tuple[str, int] | None:
        """Longest name starting at pos: (agent id or "*", end index) or None."""
        for n in self._lengths:
            if pos + n > len(text):
                continue
            agent = self._names.get(_key(text[pos : pos + n]))
            if agent is None:
                continue
            end = pos + n
            if end < len(text) and _ASCII_WORD.match(text[end - 1]) and _ASCII_WORD.match(text[end]):
                continue
            if end < len(text) and text[end] in "-." and end + 1 < len(text) and _ASCII_WORD.match(text[end + 1]):
                continue  # "@bob.smith" is not "@bob"
            return agent, end
        return None


def scan(text: str, members: Resolver, known: Resolver | None = None) -> Found:
    """Mentions in text: members resolve; anything else (non-member or unknown) is unresolved."""
    masked = _mask_code(text)
    agents: list[str] = []
    unresolved: list[str] = []
    everyone = False
    i = masked.find("@")
    while i != -1:
        start = i + 1
        if i > 0 and _EMAIL_LEFT.match(masked[i - 1]):
            i = masked.find("@", start)
            continue
        hit = members.match(masked, start)
        if hit is not None:
            agent, end = hit
            if agent == "*":
                everyone = True
            elif agent not in agents:
                agents.append(agent)
            i = masked.find("@", end)
            continue
        other = known.match(masked, start) if known is not None else None
        end = other[1] if other is not None else _token_end(masked, start)
        if end > start:
            word = text[i:end]
            if word not in unresolved:
                unresolved.append(word)
        i = masked.find("@", max(end, start))
    return Found(tuple(agents), everyone, tuple(unresolved))


def resolve_explicit(values: Iterable[str], members: dict[str, str]) -> tuple[list[str], list[str]]:
    """Explicit mention list (ids or display names) -> (agent ids, unresolved)."""
    by_key = {_key(k): v for k, v in members.items()}
    agents: list[str] = []
    unresolved: list[str] = []
    for raw in values:
        value = raw[1:] if raw.startswith("@") else raw
        agent = by_key.get(_key(value))
        if agent is None:
            unresolved.append(raw)
        elif agent not in agents:
            agents.append(agent)
    return agents, unresolved
