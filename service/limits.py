"""How many answers the server works on at once, and what a request beyond that gets.

At most ``max_concurrent_answers`` answers (retrieval, evidence, generation, review) run at a time;
the next ``max_waiting_answers`` requests wait up to ``answer_wait_s`` for a slot, in arrival order
(a fair lock hand-off, not a thundering herd), and any request beyond those, or one whose wait runs
out, gets 429 with ``Retry-After``. Past the CPU's capacity more concurrency only makes every answer
slower (and a remote LLM's queue longer); a clear 429 lets a gateway or client back off instead.
A streamed answer holds its slot until its last event is sent (or the client goes away).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import ApiError


class AnswerSlots:
    def __init__(self, concurrent: int, waiting: int, wait_s: float):
        self.concurrent, self.waiting, self.wait_s = concurrent, waiting, wait_s
        self._cond = threading.Condition()
        self._busy = 0
        self._queue: list[object] = []  # tickets of waiting requests, oldest first
        self._recent: list[float] = []  # seconds per finished answer, for Retry-After

    @classmethod
    def from_settings(cls, s) -> AnswerSlots:
        return cls(s.max_concurrent_answers, s.max_waiting_answers, s.answer_wait_s)

    def stats(self) -> dict:
        with self._cond:
            return {"busy": self._busy, "waiting": len(self._queue), "limit": self.concurrent}

    def acquire(self) -> float:
        """Take a slot (waiting in turn) or raise 429; returns the start time to pass to ``release``."""
        from service.metrics import ANSWER_QUEUE, REFUSED_BUSY

        with self._cond:
            if self._busy < self.concurrent and not self._queue:
                self._busy += 1
                return time.monotonic()
            if len(self._queue) >= self.waiting:
                REFUSED_BUSY.inc()
                raise self._busy_error("the server is answering as many questions as it can and has "
                                       f"{len(self._queue)} waiting")
            ticket = object()
            self._queue.append(ticket)
            ANSWER_QUEUE.set(len(self._queue))
            deadline = time.monotonic() + self.wait_s
            try:
                while not (self._queue[0] is ticket and self._busy < self.concurrent):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        REFUSED_BUSY.inc()
                        raise self._busy_error(f"no answer slot came free within {self.wait_s:g} s")
                    self._cond.wait(left)
                self._busy += 1
                return time.monotonic()
            finally:
                self._queue.remove(ticket)
                ANSWER_QUEUE.set(len(self._queue))
                self._cond.notify_all()

    def release(self, started: float) -> None:
        with self._cond:
            self._busy -= 1
            self._recent = [*self._recent[-31:], time.monotonic() - started]
            self._cond.notify_all()

    @contextmanager
    def slot(self) -> Iterator[None]:
        started = self.acquire()
        try:
            yield
        finally:
            self.release(started)

    def held(self, items: Iterator, started: float) -> Iterator:
        """``items`` (a stream) whose slot, taken at ``started``, is released once: when the stream ends,
        fails, is closed, or is dropped unstarted (a client gone before the first byte)."""
        return _Held(self, items, started)

    def _busy_error(self, why: str) -> ApiError:
        typical = sorted(self._recent)[len(self._recent) // 2] if self._recent else 1.0
        retry = max(1, min(60, math.ceil(typical * (len(self._queue) + 1) / self.concurrent)))
        return ApiError(429, f"{why}; retry in {retry} s", "rate_limit_exceeded", headers={"Retry-After": str(retry)})


class _Held:
    def __init__(self, slots: AnswerSlots, items: Iterator, started: float):
        self._slots, self._items, self._started = slots, iter(items), started
        self._open = True

    def __iter__(self) -> _Held:
        return self

    def __next__(self):
        try:
            return next(self._items)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                close = getattr(self._items, "close", None)
                if close is not None:
                    close()
            finally:
                self._slots.release(self._started)

    def __del__(self) -> None:
        self.close()
