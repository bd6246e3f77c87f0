"""The server's Prometheus metrics (/metrics), in a registry of their own.

    metrics = ServerMetrics(engine_loop)
    metrics.requests.labels(endpoint="/v1/completions", status="200").inc()
    metrics.time_to_first_token.observe(0.12)
    body, content_type = metrics.render()

Request counts, tokens and latencies are counted by the handlers as replies go out; the gauges
of the scheduler and the KV pool are read at each scrape from the loop's last snapshot, so a
scrape never waits for a step.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from slimrt.engine_loop import EngineLoop

__all__ = ["ServerMetrics"]

# Seconds; a CPU decode step of a small model is a few ms, a long prefill seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    def __init__(self, loop: EngineLoop) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "slimrt_requests", "Requests answered, by endpoint and HTTP status",
            ["endpoint", "status"], registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "slimrt_prompt_tokens", "Prompt tokens of finished requests", registry=r
        )
        self.cached_prompt_tokens = Counter(
            "slimrt_prompt_tokens_cached",
            "Prompt tokens of finished requests read from the prefix cache, not computed",
            registry=r,
        )
        self.generation_tokens = Counter(
            "slimrt_generation_tokens", "Tokens generated for finished requests", registry=r
        )
        self.time_to_first_token = Histogram(
            "slimrt_time_to_first_token_seconds",
            "From a request's arrival to its first generated token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inter_token_latency = Histogram(
            "slimrt_inter_token_latency_seconds",
            "Between two generated tokens of one request",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        gauges = {
            "slimrt_requests_running": ("Requests the scheduler runs", "running"),
            "slimrt_requests_waiting": ("Requests waiting for a slot or pages", "waiting"),
            "slimrt_kv_pages_total": ("KV cache pages in the pool", "total_pages"),
            "slimrt_kv_pages_cached": (
                "KV cache pages held by no request, kept by the prefix cache until needed",
                "cached_pages",
            ),
            "slimrt_preemptions": ("Requests preempted (recomputed) so far", "preemptions"),
            "slimrt_prefix_cache_queries": (
                "Tokens looked up in the prefix cache so far",
                "prefix_query_tokens",
            ),
            "slimrt_prefix_cache_hits": (
                "Tokens found in the prefix cache so far (their prefill skipped)",
                "prefix_hit_tokens",
            ),
            "slimrt_prefix_cache_evictions": (
                "Cached KV pages evicted so far to make room",
                "prefix_evicted_pages",
            ),
        }
        for name, (help_text, field) in gauges.items():
            gauge = Gauge(name, help_text, registry=r)
            gauge.set_function(lambda field=field: getattr(loop.stats(), field))
        # used + cached + free = total.
        used = Gauge("slimrt_kv_pages_used", "KV cache pages held by requests", registry=r)
        used.set_function(lambda: (s := loop.stats()).total_pages - s.free_pages)
        free = Gauge("slimrt_kv_pages_free", "KV cache pages neither used nor cached", registry=r)
        free.set_function(lambda: (s := loop.stats()).free_pages - s.cached_pages)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
