"""contrib/grafana's dashboard queries only metrics that momd exposes: every
mom_* name in its expressions is a sample of a running momd's /metrics."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.momd import REPO

from .conftest import Daemon

DASHBOARD = REPO / "contrib" / "grafana" / "mom-dashboard.json"


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression of the dashboard: panel targets and template queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def exposed(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_metric_the_dashboard_queries_is_exposed(shrinking: Daemon) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(expressions(dashboard))
    queried = {name for e in exprs for name in re.findall(r"\bmom_[a-z0-9_]+", e)}
    assert len(queried) >= 20, queried  # host memory, pressure, guests, actions, policy time, faults
    shrinking.momd.wait_ticks(3)
    missing = queried - exposed(shrinking.metrics_port)
    assert not missing, f"the dashboard queries metrics momd does not expose: {sorted(missing)}"


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["targets"] and p["gridPos"]["w"] > 0
        for t in p["targets"]:
            used = set(re.findall(r"\$(\w+)", t["expr"]))
            assert used <= variables, (p["title"], used - variables)
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
