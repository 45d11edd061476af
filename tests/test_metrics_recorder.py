"""The metrics' bound recorders count exactly what prometheus_client's own methods count."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram

from modelserve import metrics

AMOUNTS = [0.0, 0.0001, 0.00010001, 0.00025, 0.003, 1.0, 9.99, 10.0, 10.5, 1e9]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name.split("_", 1)[1], tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_histogram_counter_and_gauge_match_their_own_methods() -> None:
    own, bound = CollectorRegistry(), CollectorRegistry()
    made = {}
    for prefix, registry in (("own", own), ("bound", bound)):
        made[prefix] = (
            Histogram(
                f"{prefix}_h", "h", ("m",), buckets=metrics.DURATION_BUCKETS, registry=registry
            ),
            Counter(f"{prefix}_c", "c", ("m",), registry=registry),
            Gauge(f"{prefix}_g", "g", registry=registry),
        )
    h, c, g = made["own"]
    bh, bc = (
        metrics._Recorder(made["bound"][0].labels("x")),
        metrics._Recorder(made["bound"][1].labels("x")),
    )
    bg = metrics._Recorder(made["bound"][2])
    for amount in AMOUNTS:
        h.labels("x").observe(amount)
        bh.observe(amount)
        c.labels("x").inc()
        bc.inc(1)
        g.inc()
        bg.inc(1)
    g.dec()
    bg.inc(-1)
    assert samples(own) == samples(bound)
    assert samples(bound)[("h_count", (("m", "x"),))] == len(AMOUNTS)
    assert samples(bound)[("g", ())] == len(AMOUNTS) - 1
