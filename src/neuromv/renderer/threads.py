"""Worker threads of the CPU render paths: how many cores there are, running work on all of them, torch's own thread
count around work that is already split over threads and numpy's BLAS kept to one thread during a render, and frames
rendered one after another with the next one started before the last is handed out (:func:`overlapped`)."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["available_cores", "in_parallel", "overlapped", "blas_one_thread", "torch_threads", "OVERLAP"]

T = TypeVar("T")

#: Jobs (frames) that :func:`overlapped` keeps queued at once: the one being handed out and the next, so the
#: workers go on to the next frame's first tiles while the last tiles of this one are finished and while the caller
#: works on it (the encoder, the sync's envelope): the cores never wait at the end of a frame.
OVERLAP = 2


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


def overlapped(jobs: Iterable[tuple[T, Callable[[], None], int]], threads: int) -> Iterator[T]:
    """Run jobs on a pool of ``threads`` worker threads, :data:`OVERLAP` at a time, and yield each one's result in
    order once it is done.

    A job is ``(result, work, n)``: ``work()`` runs ``n`` times at once (each run takes its share of the job from
    a counter shared with the others, as the compiled kernels do), and ``result`` is handed out when all ``n`` have
    returned. The next job's runs are queued before a result is handed out, so the workers go on with it
    meanwhile. Each job must own what it writes (its own output array): results are never overwritten.

    Parameters
    ----------
    jobs : iterable of (object, callable, int)
        Taken one at a time, as the pool needs them.
    threads : int
        Worker threads (at least 1).

    Yields
    ------
    object
        Each job's ``result``, in order.

    Notes
    -----
    An exception in ``work`` is raised here, at its job's turn. When the generator is closed early or fails, the
    queued runs are dropped and the running ones waited for (even through Ctrl-C, as :func:`in_parallel`), since
    they write into the jobs' arrays.
    """
    pending: deque[tuple[T, list[Future]]] = deque()
    source = iter(jobs)
    pool = ThreadPoolExecutor(max(1, int(threads)), thread_name_prefix="neuromv-render")

    def queue_next() -> None:
        job = next(source, None)
        if job is not None:
            result, work, n = job
            pending.append((result, [pool.submit(work) for _ in range(max(1, n))]))

    try:
        for _ in range(OVERLAP):
            queue_next()
        while pending:
            result, runs = pending.popleft()
            for run in runs:
                run.result()
            queue_next()
            yield result
    finally:
        runs = [r for _, rs in pending for r in rs]
        for run in runs:
            run.cancel()
        _wait_all(runs)
        pool.shutdown(wait=True)


def _wait_all(runs: list[Future]) -> None:
    """Wait for every run that started, even if a KeyboardInterrupt arrives meanwhile; re-raise it once all have
    ended (the runs' own exceptions are not raised here)."""
    pending: BaseException | None = None
    for run in runs:
        while not run.done():
            try:
                run.exception()
            except BaseException as e:  # noqa: BLE001 - re-raised below
                if run.done():
                    break
                pending = pending or e
    if pending is not None:
        raise pending


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


_blas_lock = threading.Lock()
_blas_limited = False  # a blas_one_thread() holds threadpoolctl's limit now (its first use that is still running)


@contextlib.contextmanager
def blas_one_thread() -> Iterator[None]:
    """numpy's BLAS (OpenBLAS) on one thread inside (threadpoolctl; process-wide where OpenBLAS's pool is).

    A render keeps every core busy with its own threads. OpenBLAS's workers, once woken by a matrix product (the
    music analysis, the features, the sync at the end), spin for about 0.1 s waiting for the next one, on the
    cores the render needs: 0.2-0.4 CPU seconds a render (docs/performance.md). The products there are small
    enough that one thread is as fast.

    The thread that sets the limit restores it as it leaves (threadpoolctl lets only that thread change OpenBLAS
    meanwhile); a use that starts while another holds the limit sets none of its own, so limits never stack and the
    old count always comes back. Renders that overlap the holder's end finish with the old count."""
    global _blas_limited
    with contextlib.ExitStack() as stack:
        with _blas_lock:
            mine, _blas_limited = not _blas_limited, True
        if mine:
            stack.callback(_blas_released)
            controller = _blas_controller()
            if controller is not None:  # entered as a context: leaving restores the count and gives up control
                stack.enter_context(controller.limit(limits=1, user_api="blas"))
        yield


def _blas_released() -> None:
    global _blas_limited
    with _blas_lock:
        _blas_limited = False


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's controller of the thread pools loaded now, made once (finding them reads every loaded library:
    about 18 ms); None without threadpoolctl. scipy's own OpenBLAS (the music analysis, through librosa) is loaded
    first, so that it is among them with numpy's."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency; without it the threads stay as they are
        return None
    import scipy.linalg  # noqa: F401 - loads scipy's BLAS

    return ThreadpoolController()


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
