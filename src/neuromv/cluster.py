"""Ray, for work across machines: :func:`ray_session` starts or joins a Ray instance for one run.

Ray is an optional extra (``pip install 'neuromv[cluster]'``); nothing else in NeuroMV imports it. The batch
renderer (:mod:`neuromv.batch`) and the segmented render (:mod:`neuromv.segments`) run their tasks inside a
session. ``where``:

- ``'local'``: a Ray instance started for this run on this machine (bound to 127.0.0.1, no dashboard), stopped
  when the session ends;
- ``'HOST:PORT'`` or ``'ray://HOST:PORT'``: an existing cluster, joined (its address is checked first: an
  unreachable one fails in seconds, with one line, before any work).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Iterator

from .errors import ParameterError

__all__ = ["ray_session", "require_ray", "check_address", "check_where", "needs_gpu", "check_gpus", "CONNECT_TIMEOUT",
           "RAY_EXTRA", "TASK_RETRIES", "POLL_SECONDS"]

log = logging.getLogger(__name__)

#: Seconds to wait for an existing cluster's address to answer before giving up.
CONNECT_TIMEOUT = 5.0
#: What to install for Ray (said in the error when it is missing).
RAY_EXTRA = "pip install 'neuromv[cluster]'"
#: How many times Ray runs a task again whose worker was lost (killed, its machine gone): a batch's song, a segment.
TASK_RETRIES = 3
#: How often the driver wakes while it waits for tasks (to see a cancel).
POLL_SECONDS = 0.25
_ADDRESS_RE = re.compile(r"^(?:ray://)?(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


def require_ray():
    """The ``ray`` module.

    Raises
    ------
    ParameterError
        Ray is not installed (one line naming the extra to install).
    """
    try:
        import ray
    except ImportError:
        raise ParameterError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def check_address(where: str, timeout: float = CONNECT_TIMEOUT) -> tuple[str, int]:
    """``'HOST:PORT'`` (or ``'ray://HOST:PORT'``) -> (host, port), after a TCP connection to it succeeded.

    Raises
    ------
    ParameterError
        Not an address, or nothing answers there within ``timeout`` seconds.
    """
    m = _ADDRESS_RE.match(str(where).strip())
    if not m or not 0 < int(m.group("port")) < 65536:
        raise ParameterError(f"--ray must be 'local' or a cluster's address HOST:PORT (or ray://HOST:PORT), not "
                             f"{where!r}")
    host, port = m.group("host").strip("[]"), int(m.group("port"))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise ParameterError(f"cannot reach the Ray cluster at {host}:{port}: {e.strerror or e}") from None
    return host, port


def check_where(where) -> str:
    """``--ray``'s value, checked before any work: ``'local'``, or an address that answers (:func:`check_address`);
    Ray must be installed (:func:`require_ray`). Returns it stripped.

    Raises
    ------
    ParameterError
        One line: Ray missing, not an address, or nothing answers there.
    """
    require_ray()
    where = str(where).strip()
    if where != "local":
        check_address(where)
    return where


def needs_gpu(settings) -> bool:
    """Whether a render of ``settings`` (:class:`~neuromv.settings.RenderSettings`) asks for a GPU: its tasks then
    declare one (``num_gpus=1``)."""
    return str(settings.device).startswith("cuda")


def check_gpus(ray, settings) -> None:
    """Refuse, before any task, a render that needs a GPU (:func:`needs_gpu`) on a cluster that has none.

    Raises
    ------
    ParameterError
    """
    if needs_gpu(settings) and not ray.cluster_resources().get("GPU", 0):
        raise ParameterError("--device cuda on Ray needs a GPU, and the Ray cluster has none")


@contextlib.contextmanager
def ray_session(where: str, *, num_cpus: int | None = None) -> Iterator[object]:
    """A Ray instance for the block: started (``'local'``) or joined (an address), and shut down after it.

    Parameters
    ----------
    where : str
        ``'local'`` or an address (see the module).
    num_cpus : int, optional
        ``'local'`` only: the CPUs Ray may use (default: every core).

    Yields
    ------
    module
        ``ray``, initialised.

    Raises
    ------
    ParameterError
        Ray missing, or an address that is not one or does not answer: before any work.
    """
    ray = require_ray()
    where = str(where).strip()
    if ray.is_initialized():  # a caller's own session (a notebook, a test): use it as it is, leave it running
        yield ray
        return
    if where == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, configure_logging=False)
        log.info("ray: started a local instance (%s CPUs)", ray.cluster_resources().get("CPU", "?"))
    else:
        check_address(where)
        ray.init(address=where.strip(), log_to_driver=False, configure_logging=False)
        log.info("ray: joined %s (%s CPUs, %s GPUs)", where, ray.cluster_resources().get("CPU", 0),
                 ray.cluster_resources().get("GPU", 0))
    try:
        yield ray
    finally:
        ray.shutdown()
