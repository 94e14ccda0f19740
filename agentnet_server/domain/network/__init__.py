"""The network's use cases: registry, groups, chat and resume. Transport-free; live sessions are
reached only through the domain's own interface, `domain.live.Live` (the hub, given by the app).

Caches of agents and memberships live here and change only in post-commit callbacks, which
run on the event loop in commit order, so fan-out always sees the membership that the store
committed the message under (docs/architecture.md, Invariants).

One module per concern, each a layer of the `Network` class over the previous one:
state.py (caches, the acting-agent rule) < registry.py < groups.py < chat.py <
resume.py < replication.py (which completes `Network`).
"""

from __future__ import annotations

from ..commands import PreparedSend, SendCommand, SignedFields, Target
from .replication import Network
from .state import EXCERPT, REPLAY_PAGE, Sent, excerpt

__all__ = [
    "EXCERPT",
    "REPLAY_PAGE",
    "Network",
    "PreparedSend",
    "SendCommand",
    "Sent",
    "SignedFields",
    "Target",
    "excerpt",
]
