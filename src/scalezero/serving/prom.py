"""Prometheus metrics of the gateway, on a registry of its own (one per app)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scalezero.serving.pool import InstanceState, Pool

COLD_START_BUCKETS_S = (0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)


class _PoolCollector(Collector):
    """Gauges read from the pools at scrape time, so they can never drift."""

    def __init__(self, pools: Callable[[], Iterable[Pool]]) -> None:
        self._pools = pools

    def collect(self) -> Iterable[Metric]:
        instances = GaugeMetricFamily(
            "scalezero_instances", "Instances by state", labels=["deployment", "state"]
        )
        queue = GaugeMetricFamily(
            "scalezero_queue_depth", "Requests waiting for an instance", labels=["deployment"]
        )
        in_flight = GaugeMetricFamily(
            "scalezero_in_flight", "Requests being served by instances", labels=["deployment"]
        )
        evictions = CounterMetricFamily(
            "scalezero_evictions", "Idle instances stopped to free memory for another "
            "deployment", labels=["deployment"]
        )
        wakes = CounterMetricFamily(
            "scalezero_wakes", "Runtime-warm instances woken (model reloaded) and ready",
            labels=["deployment"]
        )
        for pool in self._pools():
            evictions.add_metric([pool.deployment], pool.evictions)
            wakes.add_metric([pool.deployment], pool.wakes)
            for state in InstanceState:
                count = sum(1 for inst in pool.instances if inst.state is state)
                instances.add_metric([pool.deployment, str(state)], count)
            queue.add_metric([pool.deployment], pool.queue_depth)
            in_flight.add_metric([pool.deployment], pool.in_flight)
        yield instances
        yield queue
        yield in_flight
        yield evictions
        yield wakes


class GatewayMetrics:
    def __init__(self, pools: Callable[[], Iterable[Pool]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "scalezero_requests",
            "Requests answered, by route and HTTP status",
            ["route", "status"],
            registry=self.registry,
        )
        self.cold_starts = Counter(
            "scalezero_cold_starts",
            "Instances started and ready",
            ["deployment"],
            registry=self.registry,
        )
        self.cold_start_seconds = Histogram(
            "scalezero_cold_start_seconds",
            "Instance start: process spawned to server ready",
            ["deployment"],
            buckets=COLD_START_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(pools))
        self._request_counters: dict[tuple[str, int], Any] = {}

    def count_request(self, route: str, status: int) -> None:
        """One answered request; the labelled child is looked up once per (route, status)."""
        key = (route, status)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self.requests.labels(route, str(status))
        counter.inc()

    def observe_cold_start(self, deployment: str, seconds: float) -> None:
        self.cold_starts.labels(deployment).inc()
        self.cold_start_seconds.labels(deployment).observe(seconds)
