"""The engine: discovery, collection, policy and controllers on their intervals.

One scheduler thread owns time; blocking hypervisor calls and controllers run
on a small fixed pool with deadlines. Nothing is per guest: the thread count is
the same for 1 guest or 1,000.

Data flows one way: collectors -> history -> snapshot -> policy -> decisions ->
controllers. The snapshot is a plain value, the same thing the flight recorder
writes and `momctl policy run` replays.

Modules, bottom up:

- ``gateway``: the call pool, deadlines, calls in flight, their faults;
- ``inventory``: the guests discovery knows, their histories, the snapshot;
- ``rows``: running collectors and merging their rows;
- ``tick``: one policy tick (snapshot, decisions, control calls, the record);
- ``status``: the immutable value the engine publishes after each step, the
  only thing RPC, metrics, the tick line and the recorder read;
- ``scheduler``: the run loop (intervals, reload coalescing, discovery soon);
- ``explain``: why a guest got its controls, from a tick's record and trace;
- ``engine``: ``Engine``, which puts them together, and ``EngineSettings``.
"""
