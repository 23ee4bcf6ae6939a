"""Continuous batching: one worker thread steps every running sequence together; requests join between steps.

Handlers on the asyncio loop call :meth:`Scheduler.submit` (the whole result) or :meth:`Scheduler.stream`
(each token as it is produced, then the result). The worker admits queued requests up to ``max_batch``
running sequences before every step, so a new request starts at the next step instead of waiting for a
batch to drain. Results do not depend on what shares a batch (the exact engine is batch-invariant), so
the scheduler is free to batch however load arrives.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lorachain.sidecar.exact_engine import ExactEngine, Sequence
from lorachain.sidecar.types import GenerationRequest, GenerationResult, SidecarError

T = TypeVar("T")
log = logging.getLogger(__name__)


class SidecarMetrics:
    """Prometheus metrics of one sidecar process."""

    def __init__(self, engine: ExactEngine) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("lorachain_sidecar_queue_depth", "Requests waiting to join the batch", registry=r)
        self.running = Gauge("lorachain_sidecar_running_sequences", "Sequences in the running batch", registry=r)
        self.tokens = Counter("lorachain_sidecar_generated_tokens", "Tokens generated", registry=r)
        self.prompt_tokens = Counter("lorachain_sidecar_prompt_tokens", "Prompt tokens processed", registry=r)
        self.requests = Counter("lorachain_sidecar_requests", "Finished requests", ["outcome"], registry=r)
        self.latency = Histogram("lorachain_sidecar_request_seconds", "Time from submission to result", registry=r,
                                 buckets=(0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100))  # fmt: skip
        self.step_time = Histogram("lorachain_sidecar_step_seconds", "Time of one batched decoding step", registry=r,
                                   buckets=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1))  # fmt: skip
        r.register(AdapterCacheCollector(engine.store.stats))


class AdapterCacheCollector(Collector):
    """The adapter store's counts, read at scrape time: cache hits and misses as counters, sizes as gauges."""

    COUNTERS = (
        ("hits_device", "Adapter lookups served from device memory (cache hits)"),
        ("hits_host", "Adapter lookups served from host memory (device-cache misses)"),
        ("loads_disk", "Adapter loads from disk (cache misses)"),
        ("evictions", "Adapters evicted from memory"),
    )
    GAUGES = (
        ("registered", "Adapters registered on disk"),
        ("host_resident", "Adapters resident in host memory"),
        ("device_resident", "Adapters resident in device memory"),
        ("host_bytes", "Bytes of adapters in host memory"),
    )

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats()
        for key, doc in self.COUNTERS:
            if key in stats:
                yield CounterMetricFamily(f"lorachain_sidecar_adapter_{key}", doc, value=stats[key])
        for key, doc in self.GAUGES:
            if key in stats:
                yield GaugeMetricFamily(f"lorachain_sidecar_adapters_{key}", doc, value=stats[key])


@dataclass
class _Job:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    tokens: asyncio.Queue | None = None  # streaming: token ids, then the result or an error
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False

    def emit(self, token: int) -> None:
        if self.tokens is not None:
            self.loop.call_soon_threadsafe(self.tokens.put_nowait, token)

    def resolve(self, outcome: GenerationResult | BaseException) -> None:
        def settle() -> None:
            if self.tokens is not None:
                self.tokens.put_nowait(outcome)
            if self.future.done():
                return
            if isinstance(outcome, BaseException):
                self.future.set_exception(outcome)
            else:
                self.future.set_result(outcome)

        self.loop.call_soon_threadsafe(settle)


class Scheduler:
    """Runs an :class:`ExactEngine` for concurrent callers with continuous batching."""

    def __init__(self, engine: ExactEngine, max_batch: int = 64, metrics: SidecarMetrics | None = None) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.metrics = metrics or SidecarMetrics(engine)
        self._queue: deque[_Job] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._engine_lock = threading.Lock()  # held by the batcher while it drives the engine
        self._thread = threading.Thread(target=self._run, name="sidecar-batcher", daemon=True)
        self._thread.start()

    async def submit(self, request: GenerationRequest) -> GenerationResult:
        """Generate to completion; raises the request's :class:`SidecarError` if it is invalid."""
        job = self._enqueue(request, streaming=False)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True
            raise

    async def stream(self, request: GenerationRequest) -> AsyncIterator[int | GenerationResult]:
        """Yield token ids as they come, then the :class:`GenerationResult`."""
        job = self._enqueue(request, streaming=True)
        assert job.tokens is not None
        try:
            while True:
                item = await job.tokens.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, GenerationResult):
                    return
        finally:
            job.cancelled = True  # a client that went away stops costing compute

    def run_exclusive(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (blocking) while the batcher is between steps: for other work on the engine."""
        with self._engine_lock:
            return fn()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def _enqueue(self, request: GenerationRequest, streaming: bool) -> _Job:
        loop = asyncio.get_running_loop()
        job = _Job(request, loop, loop.create_future(), asyncio.Queue() if streaming else None)
        with self._wake:
            self._queue.append(job)
            self.metrics.queue_depth.set(len(self._queue))
            self._wake.notify()
        return job

    def _run(self) -> None:
        running: list[tuple[Sequence, _Job]] = []
        while True:
            with self._wake:
                while not self._queue and not running and not self._closed:
                    self._wake.wait()
                if self._closed:
                    break
                admitted = []
                while self._queue and len(running) + len(admitted) < self.max_batch:
                    admitted.append(self._queue.popleft())
                self.metrics.queue_depth.set(len(self._queue))
            with self._engine_lock:
                running = self._advance(running, admitted)
        for _, job in running:
            job.resolve(SidecarError("the sidecar is shutting down"))

    def _advance(self, running: list[tuple[Sequence, _Job]], admitted: list[_Job]) -> list[tuple[Sequence, _Job]]:
        """Start the admitted jobs and run one engine step over everything running; what still runs."""
        for job in admitted:
            try:
                running.append((self.engine.start(job.request), job))
                self.metrics.prompt_tokens.inc(len(job.request.prompt_ids))
            except SidecarError as exc:
                self.metrics.requests.labels("rejected").inc()
                job.resolve(exc)
            except Exception as exc:
                log.exception("engine.start failed")
                job.resolve(exc)
        running = [(seq, job) for seq, job in running if not job.cancelled]
        self.metrics.running.set(len(running))
        if not running:
            return running
        started = time.monotonic()
        try:
            self.engine.step([seq for seq, _ in running])
        except Exception as exc:
            log.exception("engine step failed; failing %d requests", len(running))
            for _, job in running:
                job.resolve(exc)
            return []
        self.metrics.step_time.observe(time.monotonic() - started)
        self.metrics.tokens.inc(len(running))
        return [(seq, job) for seq, job in running if not self._deliver(seq, job)]

    def _deliver(self, seq: Sequence, job: _Job) -> bool:
        """Hand the step's token to ``job``, and its result when ``seq`` is done; True once ``job`` is settled."""
        job.emit(seq.output_ids[-1])
        if not seq.done:
            return False
        try:
            result = self.engine.finish(seq)
        except Exception as exc:
            log.exception("engine.finish failed")
            self.metrics.requests.labels("error").inc()
            job.resolve(exc)
            return True
        self.metrics.requests.labels("ok").inc()
        self.metrics.latency.observe(time.monotonic() - job.submitted)
        job.resolve(result)
        return True
