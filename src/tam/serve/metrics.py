"""Prometheus metrics of one service (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    """Jobs by state, queue length, rejections by reason, and latency histograms (wait, run, total)."""

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.jobs = Gauge("tam_jobs", "Jobs in the state folder, by state", ["state"], registry=r)
        self.queue = Gauge("tam_queue_length", "Jobs waiting for a worker", registry=r)
        self.finished = Counter("tam_jobs_finished", "Jobs finished since start, by final state", ["state"],
                                registry=r)
        self.rejected = Counter("tam_requests_rejected", "Job submissions refused, by HTTP status", ["status"],
                                registry=r)
        self.wait = Histogram("tam_job_wait_seconds", "Time from submission to a worker starting the job",
                              buckets=BUCKETS, registry=r)
        self.run = Histogram("tam_job_run_seconds", "Time a worker spent on the job", buckets=BUCKETS, registry=r)
        self.latency = Histogram("tam_job_latency_seconds", "Time from submission to the result",
                                 buckets=BUCKETS, registry=r)

    def render(self, counts: dict[str, int], queued: int) -> bytes:
        """The text exposition format, with the gauges set from the current counts."""
        for state, n in counts.items():
            self.jobs.labels(state).set(n)
        self.queue.set(queued)
        return generate_latest(self.registry)
