"""The effectiveness lab: MOM's real engine on the simulated host, scored.

- :mod:`mom.lab.runner`: one run, a scenario under a policy for a seed, with a
  clock that jumps instead of sleeping.
- :mod:`mom.lab.metrics`: what the guests and the host went through, per run,
  from the simulator's ground truth (``SimModel.observe()``,
  :class:`mom.sim.observation.HostObservation`).
- :mod:`mom.lab.bench`: many runs in parallel processes, and capacity search.
- :mod:`mom.lab.report`: Markdown tables, JSON lines and PNG plots.

``momctl bench`` (mom.cli.bench_cmd) is the command line.
"""
