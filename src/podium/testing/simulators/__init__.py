"""Wire-accurate local simulators of hosted model APIs: real HTTP on loopback, real SSE framing,
real error bodies, and injectable faults. Tests (ours and yours) point adapters and official SDKs
at them instead of the internet."""
