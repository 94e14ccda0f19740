"""The live core, free of any transport: what connected sessions receive and when.

- hub.py: live sessions, bounded queues, fan-out, presence and heartbeat timeouts
- roster.py: the roster and presence policy (which agent_list and presence a session gets)
- delivery.py: the delivery engine (replies, replay, caught_up, live; cursors, gaps, overflow)
- encode.py: records → ServerEvents and resources (protobuf), serialized once per envelope

The gRPC Session stream (rpc/session.py) and the REST event stream (rest/sse.py) are two
adapters over it.
"""
