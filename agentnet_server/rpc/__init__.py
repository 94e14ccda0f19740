"""The gRPC layer: servicers, the Session stream, proto <-> domain conversion, error table."""
