"""Worker threads of the CPU render paths: how many cores there are, running work on all of them, and torch's own
thread count around work that is already split over threads."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

import torch

__all__ = ["available_cores", "in_parallel", "torch_threads"]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def in_parallel(work: Callable[[int], None], n: int) -> None:
    """Run ``work(0)`` on this thread and ``work(1)`` ... ``work(n - 1)`` on worker threads; wait for all (even on
    Ctrl-C), then re-raise the first exception of any of them."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except Exception as e:  # re-raised on the calling thread
            errors.append(e)

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, n)]
    for t in workers:
        t.start()
    try:
        run(0)
    finally:
        _join_all(workers)
    if errors:
        raise errors[0]


def _join_all(threads: list[threading.Thread]) -> None:
    """Join every thread, even if a KeyboardInterrupt arrives meanwhile; re-raise it once all have ended."""
    pending: BaseException | None = None
    for t in threads:
        while t.is_alive():
            try:
                t.join()
            except BaseException as e:  # noqa: BLE001 - re-raised below
                pending = pending or e
    if pending is not None:
        raise pending


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside, the old count restored after (process-wide)."""
    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if old != n:
            torch.set_num_threads(old)
