"""The bottom layer: vocabulary every other package shares, importing nothing from mom.

Errors (``mom.core.errors``), time (clock), the call pool, the fault log and the
model types a tick passes between layers live here, so that policy, sim,
hypervisors, collectors, controllers, engine, daemon, rpc and cli can all use
them without importing each other upward. ``tests/test_layering.py`` enforces
the order.
"""
