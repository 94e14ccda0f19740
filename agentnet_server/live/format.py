"""Output formats: the one seam between the delivery engine and a transport.

The delivery engine (delivery.py) decides what a session receives and in which order; a
`Format` decides what each of those events becomes for one transport, and `Delivery[T]` yields
whatever its format makes. The engine hands the format two kinds of things:

- `envelope(env)`: a sequenced event (a message or an inbox item, `records.Envelope`) that every
  recipient gets alike: a format renders it once and caches the rendering on the envelope
  (`data` for the protobuf bytes, `text` for a second format), so a fan-out to N sessions costs
  one rendering;
- `event(ev)`: any other event (a reply, caught_up, history_gap, presence, the agent list, the
  fatal Error) as a `hub.Event` holding the ServerEvent message; shared ones (presence, read
  markers, the agent list) are rendered once per format the same way.

A format renders from message objects, never by parsing bytes that the server serialized.

The formats: `PROTOBUF` (here) makes the serialized ServerEvent, which the gRPC Session stream
writes (rpc/session.py); the REST event stream makes an SSE frame and the cursor it delivers
(rest/sse.py). When the session ends with an error, the engine's last frame is the fatal Error
event; the adapter then closes its transport with that status.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from ..records import Envelope
from . import encode
from .hub import Event

T_co = TypeVar("T_co", covariant=True)


class Format(Protocol[T_co]):
    """What one transport writes for each event of a session."""

    def envelope(self, env: Envelope) -> T_co:
        """A sequenced event; rendered once per envelope and shared by every recipient."""
        ...

    def event(self, ev: Event) -> T_co:
        """Any other event; a shared Event is rendered once and shared likewise."""
        ...


class Protobuf:
    """The serialized ServerEvent (the gRPC Session stream writes these bytes as they are)."""

    # The plain function, not a method: the engine's hot path makes one call per delivery.
    envelope = staticmethod(encode.encode)

    @staticmethod
    def event(ev: Event) -> bytes:
        data = ev.data
        if data is None:
            data = ev.data = ev.message().SerializeToString()
        return data


PROTOBUF: Format[bytes] = Protobuf()
