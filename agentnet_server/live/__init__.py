"""The live core, free of any transport: what connected sessions receive and when.

- hub.py: live sessions, bounded queues, fan-out, presence and heartbeat timeouts; the queued
  items (Envelope: sequenced, Event: any other), which cache each format's rendering
- roster.py: the roster and presence policy (which agent_list and presence a session gets)
- delivery.py: the delivery engine (replies, replay, caught_up, live; cursors, gaps, overflow)
- format.py: the output-format interface the engine renders through, and the protobuf format
- encode.py: records → ServerEvents and resources (protobuf), serialized once per envelope

The gRPC Session stream (rpc/session.py, protobuf format) and the REST event stream
(rest/sse.py, SSE format) are two adapters over it (docs/architecture.md, "Delivery").
"""
