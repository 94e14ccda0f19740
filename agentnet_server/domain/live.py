"""What the domain needs from the live core (the hub in live/hub.py), as an interface the domain
owns: the domain depends on this, never on live/, and the composition root (app.py) hands it the
hub, which implements it.

The domain tells the live core about committed changes only, from its post-commit callbacks, in
commit order (docs/architecture.md, Invariants): a published envelope, a membership that began
or ended, a conversation that must be caught up from the store. How sessions, cursors and queues
carry that out is the live core's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ..records import Envelope


class Live(Protocol):
    """The live sessions as the domain sees them (implemented by live.hub.Hub)."""

    def publish(self, env: Envelope, agents: Iterable[str]) -> None:
        """Push one committed (or re-read) envelope to every live session of these agents. Never
        blocks: a session that cannot take it catches up from the store."""
        ...

    def online(self, agent_id: str) -> bool:
        """Connected here, or (with several replicas) on another replica."""
        ...

    def has_sessions(self, agent_id: str) -> bool:
        """Has a live session on this replica (someone here to publish to)."""
        ...

    def remote_presence(self, replica: str, online: Iterable[str], offline: Iterable[str], ttl: float) -> None:
        """What another replica says about its sessions; its word on an agent lasts `ttl` seconds."""
        ...

    def member_joined(self, agent_id: str, conv: str, seq: int) -> None:
        """The agent became a member of a conversation whose live delivery starts after `seq`."""
        ...

    def member_left(self, agent_id: str, conv: str) -> None:
        """The agent is no longer a member: deliver nothing more of the conversation to it."""
        ...

    def catch_up(self, agent_id: str, conv: str) -> None:
        """What was published of the conversation may have missed the agent's sessions: they read
        it from the store before going live again."""
        ...

    def catch_up_all(self) -> None:
        """Anything may have been missed (notifications were lost): every session catches up
        from the store before going live again."""
        ...
