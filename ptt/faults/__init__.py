"""Fault injection for tests, benchmarks and by hand.

- :mod:`ptt.faults.proxy`: the asyncio UDP impairment proxy (loss, bursts, delay, jitter,
  reordering, duplication, blackouts), ``ImpairmentProxy(ProxyConfig(...))``.
- :mod:`ptt.faults.cli`: its command line, ``python -m ptt.faults.proxy --help``.

Nothing is imported here, so that ``python -m ptt.faults.proxy`` runs the module only once.
"""
