"""Micro-batching: the texts of concurrent requests scored in one model call.

Requests put their items on a bounded queue (`submit`); one worker task takes the first
request waiting, lets others join it for at most `max_wait_s` (counted from that
request's arrival) or until `max_batch` items wait, takes whole requests up to `max_batch`
items (at least one request: a larger one runs alone), sorts them by length and calls the
scoring function on a thread of its own, so the event loop keeps answering while the model
runs; each request then gets its own slice back, in its own order.

The queue bound counts items, not requests: a request that would pass `max_queue` is
refused at once (`QueueFull`) rather than queued. The model runs on that one thread only,
loading included (`call_in_model_thread`), so it is never called from two threads at once.
A model call that fails is tried again request by request, so only the request whose
items break the model fails. `close` scores what is queued, then stops. Pure asyncio and
one thread: nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass


class QueueFull(Exception):
    """The queue holds too many items to take this request now; try again shortly."""

    def __init__(self, waiting: int, limit: int):
        super().__init__(f"{waiting} texts are waiting for the model and the limit is {limit}")
        self.waiting = waiting
        self.limit = limit


class Closed(Exception):
    """The batcher is stopping and takes no new requests."""


@dataclass
class _Request:
    items: list
    future: asyncio.Future
    arrived: float


@dataclass
class BatchStats:
    requests: int = 0
    model_calls: int = 0
    texts: int = 0
    largest_batch: int = 0
    failed_calls: int = 0


class MicroBatcher:
    """`score(items) -> results` (one result per item, in order) called on batches of the
    items of concurrent `submit` calls; `length_of(item)` orders a batch."""

    def __init__(self, score: Callable[[list], list], *, max_batch: int, max_wait_s: float, max_queue: int,
                 length_of: Callable[[object], int] = len):
        self._score = score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._length_of = length_of
        self._pending: collections.deque[_Request] = collections.deque()
        self._queued_items = 0
        self._arrived: asyncio.Event | None = None
        self._closing = False
        self._worker: asyncio.Task | None = None
        self._model_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlpft-model")
        self.stats = BatchStats()

    @property
    def queued(self) -> int:
        """Items waiting for a model call (not those in the call running now)."""
        return self._queued_items

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._arrived = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="nlpft-batcher")

    async def call_in_model_thread(self, function: Callable, *args):
        """`function(*args)` on the model's thread (loading, warming up)."""
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, function, *args)

    async def submit(self, items: list) -> list:
        """The results of `items`, scored with whatever else is waiting. Raises QueueFull when
        they do not fit in the queue, Closed once `close` was called."""
        if self._closing:
            raise Closed("the server is shutting down")
        if self._queued_items + len(items) > self.max_queue:
            raise QueueFull(self._queued_items, self.max_queue)
        loop = asyncio.get_running_loop()
        request = _Request(list(items), loop.create_future(), loop.time())
        self._pending.append(request)
        self._queued_items += len(request.items)
        self.stats.requests += 1
        self._arrived.set()
        return await request.future

    async def close(self) -> None:
        """Score everything queued, then stop the worker and the model's thread."""
        self._closing = True
        if self._worker is not None:
            self._arrived.set()
            await self._worker
        self._model_thread.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            if batch:
                await self._score_batch(batch)

    async def _next_batch(self) -> list[_Request] | None:
        """The requests of the next model call ([] when all taken were abandoned); None
        once closing with nothing queued."""
        while not self._pending:
            if self._closing:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = self._pending[0].arrived + self.max_wait_s
        while self._queued_items < self.max_batch and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        batch, size = [], 0
        while self._pending and (not batch or size + len(self._pending[0].items) <= self.max_batch):
            request = self._pending.popleft()
            self._queued_items -= len(request.items)
            if not request.future.done():  # a request whose client left is dropped unscored
                batch.append(request)
                size += len(request.items)
        return batch

    async def _score_batch(self, batch: list[_Request]) -> None:
        try:
            results = await self._score_sorted([item for request in batch for item in request.items])
        except Exception as exc:
            self.stats.failed_calls += 1
            if len(batch) > 1:  # one request's items may be what broke the call: each again on its own
                for request in batch:
                    await self._score_batch([request])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        start = 0
        for request in batch:
            end = start + len(request.items)
            if not request.future.done():
                request.future.set_result(results[start:end])
            start = end
        self.stats.model_calls += 1
        self.stats.texts += len(results)
        self.stats.largest_batch = max(self.stats.largest_batch, len(results))

    async def _score_sorted(self, items: list) -> list:
        """`score` of `items`, called on them shortest first; the results in `items`' order."""
        order = sorted(range(len(items)), key=lambda i: self._length_of(items[i]))
        scored = await self.call_in_model_thread(self._score, [items[i] for i in order])
        if len(scored) != len(items):
            raise RuntimeError(f"the model returned {len(scored)} results for {len(items)} texts")
        results = [None] * len(items)
        for position, index in enumerate(order):
            results[index] = scored[position]
        return results
