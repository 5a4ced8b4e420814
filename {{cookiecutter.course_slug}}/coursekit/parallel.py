"""Bounded concurrency that stops promptly: after Ctrl-C or SIGTERM nothing new starts, and work in flight
sees the stop (its waits end and it rolls back) instead of running to its timeouts."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Interrupted(Exception):
    """Raised inside a worker once a stop was asked for."""


class Stop:
    """A stop signal shared by the workers of one run."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Interrupted if a stop was asked for."""
        if self._event.is_set():
            raise Interrupted("interrupted")

    def reason(self) -> str | None:
        """For polling loops: why to give up now, or None."""
        return "interrupted before it was ready" if self._event.is_set() else None


def run_all(func: Callable[[T], R], items: Iterable[T], workers: int, stop: Stop) -> list[R]:
    """func over items with at most `workers` at once, results in order; on KeyboardInterrupt the queued
    items never start, those in flight are told to stop and finish, then the interrupt goes on."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    futures = [pool.submit(func, item) for item in items]
    try:
        return [future.result() for future in futures]
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


POLL_WORKERS = 16  # seats asked at once by observe and status: one slow seat holds one worker, not the class


def each(func: Callable[[T], R], items: Iterable[T], workers: int = POLL_WORKERS) -> list[R]:
    """func over items, at most `workers` at once, results in order (for reads that need no rollback)."""
    return run_all(func, list(items), workers, Stop())
