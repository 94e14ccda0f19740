"""`agentnet bench`: the benchmark, a package of its own so the client library does not carry it.

- bench.py: the controller (scenarios, rounds, report); `agentnet bench` runs `bench.run`
- load.py: a load process (lean sessions), driven by the controller over stdin/stdout
- raw.py: the raw transport ceiling, a minimal forwarding servicer over the same protocol and TLS
"""
