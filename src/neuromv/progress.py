"""Progress reporting and cancellation, shared by every slow stage.

Two channels, as in demucs: a tqdm bar for people and a callback for programs (``callback(stage, done, total)``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator

from .errors import Interrupted

__all__ = ["Progress", "ProgressCallback", "check_cancel", "CancelHooks", "training_checks"]

#: Called as ``callback(stage, done, total)``; ``stage`` is e.g. ``'render'`` or ``'fit'``; ``total`` may be None.
ProgressCallback = Callable[[str, int, "int | None"], None]


class Progress:
    """One stage's progress: a tqdm bar for people and/or a callback for programs."""

    def __init__(self, stage: str, total: int | None, progress: bool | ProgressCallback, unit: str = "frame"):
        self.stage, self.total, self.done = stage, total, 0
        self._callback = progress if callable(progress) else None
        self._bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=stage, unit=unit, dynamic_ncols=True, leave=False)
        if self._callback:
            self._callback(stage, 0, total)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self._callback:
            self._callback(self.stage, self.done, self.total)

    def note(self, **values) -> None:
        """Show values beside the bar (e.g. ``loss=0.012``)."""
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`~neuromv.errors.Interrupted` if ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise Interrupted("interrupted; no output written")


class CancelHooks:
    """Make every layer of some torch modules check the calling thread's cancel event as it runs, so that one long
    model call (a window of a song, a training step of a wide network) stops within one layer's time.

    The event is per thread (:meth:`watching`): a model shared by several threads stops only the cancelled
    thread's work, and outside :meth:`watching` the hooks do nothing.

    Parameters
    ----------
    modules : iterable of torch.nn.Module
        Every submodule of each gets a forward pre-hook.
    backward : bool
        Also check as each parameter's gradient is computed (for training).
    """

    def __init__(self, modules: Iterable = (), *, backward: bool = False) -> None:
        self._local = threading.local()
        self._handles = []
        for net in modules:
            for m in net.modules():
                self._handles.append(m.register_forward_pre_hook(self._hook))
            if backward:
                self._handles += [p.register_hook(self._grad_hook) for p in net.parameters() if p.requires_grad]

    def _hook(self, module, args) -> None:
        check_cancel(getattr(self._local, "cancel", None))

    def _grad_hook(self, grad) -> None:
        check_cancel(getattr(self._local, "cancel", None))

    @contextlib.contextmanager
    def watching(self, cancel: threading.Event | None) -> Iterator[None]:
        """While the block runs in this thread, the layers raise :class:`~neuromv.errors.Interrupted` once
        ``cancel`` is set."""
        before = getattr(self._local, "cancel", None)
        self._local.cancel = cancel
        try:
            yield
        finally:
            self._local.cancel = before

    def remove(self) -> None:
        """Take the hooks off the modules."""
        for h in self._handles:
            h.remove()
        self._handles.clear()


@contextlib.contextmanager
def training_checks(modules: Iterable, cancel: threading.Event | None) -> Iterator[None]:
    """For a training loop: while the block runs, every layer of ``modules`` checks ``cancel`` forward and as each
    gradient is computed (:class:`CancelHooks` with ``backward=True``); the hooks come off afterwards. Nothing at
    all when ``cancel`` is None."""
    if cancel is None:
        yield
        return
    hooks = CancelHooks(modules, backward=True)
    try:
        with hooks.watching(cancel):
            yield
    finally:
        hooks.remove()
