"""Vendor simulators: real HTTP/websocket servers on loopback for tests, ``streamd demo`` and benchmarks."""
