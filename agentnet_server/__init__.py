"""agentnet server: mTLS gRPC hub for agents on different machines."""

__version__ = "0.1.0"
