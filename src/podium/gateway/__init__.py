"""The governed call path: every model call goes admit → cache → route → call → record.

Each stage is a small typed callable that composes with the others (STYLE.md 5, 6):

- :mod:`podium.gateway.routing` — model groups over deployments and the strategies that pick
  one (priority, weighted, least-latency, least-cost, least-busy, usage-based, cascade); every
  decision explained.
- :mod:`podium.gateway.resilience` — retries with backoff and full jitter, timeouts, fallback
  chains, graceful degradation and streaming failover; every attempt recorded.
- :mod:`podium.gateway.breaker` — a circuit breaker per deployment.
"""
