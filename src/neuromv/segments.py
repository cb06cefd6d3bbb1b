"""One long song across workers: a segmented render on a Ray cluster (``render --ray WHERE --segments N|auto``).

How it works (docs/cluster.md):

1. The driver (the machine that runs ``neuromv render``) does what a plain render does up to the frames: the
   plan, the fit, the song's features and structure (:meth:`neuromv.plan.Plan.panels`), once, for the whole song,
   so the song-wide normalisation stays global.
2. It puts one :class:`SegmentJob` in Ray's object store: the settings, the network (a CPPN's weights or a fitted
   picture's :class:`~neuromv.picture.PictureNet`), the palette, and the whole song's per-frame latents, zooms and
   colour maps (about 130 bytes a frame at 32 mel bands: 0.7 MB for a three-minute song at 30 fps).
3. Each segment, a contiguous range of whole groups of pictures (the ``gop`` setting, 10 s by default), is a Ray
   task (:func:`render_segment`, one CPU): the worker builds the renderer, renders its range frame by frame,
   streams the frames to a :class:`~neuromv.video.VideoWriter` with the render's settings (crf, preset, codec,
   gop), and returns the encoded file's bytes. While it renders its memory stays flat (a few frames and the
   encoder's look-ahead); the bytes it returns are at most :data:`MAX_SEGMENT_SECONDS` of video.
4. The driver writes each segment to a temporary folder as it arrives (one at a time in memory), joins them
   without re-encoding and muxes the song's audio in once (:func:`neuromv.video.concat_videos`), atomically, and
   removes the folder.

Every render, plain or not, encodes one GOP at a time, each by a fresh encoder with a fixed thread count
(:data:`neuromv.video.ENCODER_THREADS`), so a GOP's bytes depend on its frames only: cut between GOPs, the joined
segments are the plain render's video stream, bit for bit, at any crf (with one encoder for the whole song, the rate
control's history differs after a cut and the frames differ by encoder noise: 38.9 dB PSNR at worst, measured).
A lost worker's task is retried by Ray (``max_retries``); a segment is a pure function of its range, so a retry
gives the same bytes.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParameterError

__all__ = ["SegmentJob", "SegmentResult", "check_segments", "check_segmented_render", "segment_ranges",
           "segment_count", "render_segment", "render_segments", "MAX_SEGMENTS",
           "MAX_SEGMENT_SECONDS"]

log = logging.getLogger(__name__)

#: Most segments one render may ask for.
MAX_SEGMENTS = 10_000
#: Longest segment, seconds of video (whole GOPs, at least one): a worker holds its segment's encoded bytes until it
#: returns them (and the driver holds one segment's at a time), so this bounds their memory whatever the song's
#: length: a long song makes more segments than the cluster has CPUs, and Ray runs them in waves.
MAX_SEGMENT_SECONDS = 30.0


@dataclass(frozen=True)
class SegmentJob:
    """What every segment's worker needs, put once in Ray's object store.

    Attributes
    ----------
    settings : RenderSettings
        The render's settings (size, fps, encoder, device...).
    net : CPPN or PictureNet
        The network.
    palette : PaletteMap or None
        The palette as the driver's renderer applies it.
    z : np.ndarray [shape=(n_frames, n_z), dtype=float32]
        Every frame's latents (structure applied), for the whole song: a format-1 image-mode CPPN is centred on
        all of them, as in a plain render.
    zoom : np.ndarray [shape=(n_frames,)] or None
        Every frame's zoom (the structure's), None without structure.
    colors : np.ndarray [shape=(n_frames, 3, 4)] or None
        Every frame's colour map, None without structure.
    """

    settings: Any
    net: Any
    palette: Any
    z: np.ndarray
    zoom: np.ndarray | None = None
    colors: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.z.shape[0])

    @classmethod
    def of(cls, panel) -> SegmentJob:
        """The job of a render's one panel (:class:`neuromv.plan.Panel` after :meth:`~neuromv.plan.Plan.panels`)."""
        c = panel.controls
        return cls(panel.settings, panel.cppn, panel.renderer.palette, panel.z,
                   None if c is None else np.asarray(c.zoom), panel.colors)


@dataclass(frozen=True)
class SegmentResult:
    """One segment's encoded video and what it cost on its worker.

    Attributes
    ----------
    data : bytes
        The segment's .mp4 file (video only).
    frames : int
        Its frames.
    seconds : float
        The worker's wall time: renderer setup, render and encode.
    node : str
        The worker's host name.
    peak_mb : float
        The worker process's peak resident memory so far (MB; ``getrusage``'s ``ru_maxrss``, 0 where unknown): a
        pooled worker's peak over every task it ran.
    """

    data: bytes
    frames: int
    seconds: float
    node: str
    peak_mb: float = 0.0


def check_segments(segments) -> int | str:
    """``segments`` checked: an int from 1 to :data:`MAX_SEGMENTS` (a string of digits too), or ``'auto'``.

    Raises
    ------
    ParameterError
        Anything else (one line).
    """
    if isinstance(segments, str) and segments.strip().lower() == "auto":
        return "auto"
    try:
        n = int(segments.strip()) if isinstance(segments, str) else segments
    except ValueError:
        n = None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SEGMENTS:
        raise ParameterError(f"--segments must be 'auto' or a whole number from 1 to {MAX_SEGMENTS}, not {segments!r}")
    return int(n)


def check_segmented_render(ray: str | None, segments, settings, output) -> int | str:
    """Check a segmented render's options before any slow work: Ray installed, the cluster's address answering
    (or ``'local'``), ``segments`` valid, and a render that segments can make (one picture, a video file, no
    loop). Returns ``segments`` checked (default ``'auto'``).

    Raises
    ------
    ParameterError
        One line naming what is wrong.
    """
    from .animated import is_animated
    from .cluster import check_where

    if ray is None:
        raise ParameterError("--segments needs --ray (local, or a Ray cluster's address): segments on one machine "
                             "gain nothing over a plain render")
    n = check_segments("auto" if segments is None else segments)
    if settings.stem_names():
        raise ParameterError("a render on Ray (--ray) is one picture; render --stems without --ray")
    if settings.loop is not None:
        raise ParameterError("a render on Ray (--ray) is for long songs; render a --loop without --ray")
    if is_animated(output):
        raise ParameterError(f"{output}: a render on Ray (--ray) writes a video file (.mp4, .m4v, .mov, .mkv), not an animation")
    check_where(ray)
    return n


def segment_count(segments: int | str, n_frames: int, gop: int, cpus: float, fps: float) -> int:
    """The number of segments: ``segments``, or for ``'auto'`` one per CPU of the cluster; but never a segment longer
    than :data:`MAX_SEGMENT_SECONDS` (more segments where the song needs them), and at most one per group of pictures
    of ``gop`` frames (a segment is whole GOPs: :func:`segment_ranges`), so at least 1.

    Parameters
    ----------
    segments : int or 'auto'
    n_frames : int
        Frames of the video.
    gop : int
        Frames of a group of pictures (:func:`neuromv.video.gop_frames` of the ``gop`` setting).
    cpus : float
        The cluster's CPUs (Ray's ``cluster_resources()['CPU']``).
    fps : float
        The video's frame rate.
    """
    gop = max(1, int(gop))
    gops = max(1, -(-int(n_frames) // gop))
    per = max(1, int(MAX_SEGMENT_SECONDS * float(fps) // gop))  # GOPs a segment may hold
    wanted = int(cpus) if segments == "auto" else int(segments)
    n = max(1, min(max(wanted, -(-gops // per)), gops, MAX_SEGMENTS))
    if segments != "auto" and n != int(segments):
        log.info("segments: %d asked, %d made (a segment is whole GOPs of %d frames, at most %g s of video; the "
                 "video has %d GOPs)", int(segments), n, gop, per * gop / float(fps), gops)
    return n


def segment_ranges(n_frames: int, n: int, gop: int = 1) -> list[tuple[int, int]]:
    """``n`` contiguous frame ranges ``[first, stop)`` covering ``range(n_frames)``, each of whole groups of
    pictures of ``gop`` frames (the last GOP may be short), their numbers of GOPs differing by at most one (the
    longer segments last); fewer than ``n`` where there are fewer GOPs, never an empty one."""
    gop = max(1, int(gop))
    gops = max(1, -(-int(n_frames) // gop))
    n = max(1, min(int(n), gops))
    bounds = [min(int(n_frames), (k * gops // n) * gop) for k in range(n + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(n)]


def render_segment(job: SegmentJob, first: int, stop: int, threads: int = 1) -> SegmentResult:
    """Render frames ``[first, stop)`` of ``job`` and encode them as one closed-GOP, video-only .mp4 (what a Ray
    task runs on a worker; also callable directly).

    The frames stream from the renderer to the encoder one by one; only the encoded file is held, at the end.

    Parameters
    ----------
    job : SegmentJob
    first, stop : int
        The range of frames.
    threads : int
        The renderer's CPU threads (the CPUs the task was given).

    Returns
    -------
    SegmentResult
    """
    import socket

    from .plan import build_renderer
    from .video import VideoWriter

    t0 = time.perf_counter()
    s = job.settings
    renderer = build_renderer(s, cppn=job.net, z=job.z, palette=job.palette, threads=max(1, int(threads)))
    zoom = None if job.zoom is None else job.zoom[first:stop]
    colors = None if job.colors is None else job.colors[first:stop]
    frames = renderer.frames(job.z[first:stop], yuv420=renderer.yuv420, zoom=zoom, color=colors)
    folder = tempfile.mkdtemp(prefix="neuromv-segment-")
    try:
        path = os.path.join(folder, f"segment-{first:09d}.mp4")
        with VideoWriter(path, s.width, s.height, s.fps, crf=s.crf, preset=s.preset, codec=s.codec,
                         gop=s.gop) as writer:
            for frame in frames:
                writer.write(frame)
        data = Path(path).read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    del frames, renderer
    # a pooled worker runs task after task: what a segment leaves in reference cycles (the renderer, the writer and
    # its encoder thread: about 7 MB) is freed now rather than whenever Python's collector next runs in full; the
    # worker's peak memory then levels off after some 20 segments, about 60 MB over its first's (docs/cluster.md)
    gc.collect()
    return SegmentResult(data, stop - first, time.perf_counter() - t0, socket.gethostname(), _peak_mb())


def render_segments(panel, audio, output, plan, *, ray: str, segments: int | str = "auto", overwrite: bool = False,
                    progress=False, cancel: threading.Event | None = None, t0: float | None = None,
                    num_cpus: int | None = None):
    """The frames of ``panel`` rendered in segments on a Ray cluster, joined, and the audio muxed once
    (:func:`neuromv.pipeline.render` with ``ray``; see the module).

    Parameters
    ----------
    panel : Panel
        The render's one panel, with its network, latents, controls and renderer (:meth:`Plan.panels`).
    audio : Audio or AudioFile
        The excerpt rendered (its sound track).
    output : path
        The video file.
    plan : Plan
        The render's plan (settings, inputs, where the image came from).
    ray : str
        ``'local'`` or a cluster's address (:func:`neuromv.cluster.ray_session`).
    segments : int or 'auto'
        How many segments (:func:`segment_count`).
    overwrite, progress, cancel : see :func:`neuromv.pipeline.render`
    t0 : float, optional
        ``time.perf_counter()`` at the start of the render (for its wall time).
    num_cpus : int, optional
        ``'local'`` only: the CPUs the local Ray instance may use (default: every core).

    Returns
    -------
    RenderResult
        With ``parts``: the measured parts (seconds of each stage, bytes moved, per-worker frame rates).

    Raises
    ------
    ParameterError, OutputError, Interrupted
        A cluster that cannot be reached; a segment whose task failed after its retries (its error, one line); an
        output that cannot be written; cancelled (the tasks are cancelled, nothing is left behind).
    """
    from .cluster import POLL_SECONDS, TASK_RETRIES, check_gpus, needs_gpu, ray_session
    from .pipeline import RenderResult
    from .progress import Progress, check_cancel
    from .video import check_output_path, concat_videos, gop_frames

    t0 = time.perf_counter() if t0 is None else t0
    s = plan.settings
    path = check_output_path(output, inputs=plan.inputs, overwrite=overwrite)
    job = SegmentJob.of(panel)
    n_frames = job.n_frames
    parts: dict[str, Any] = {"features_s": time.perf_counter() - t0}
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.segments-", dir=path.parent))
    try:
        t = time.perf_counter()
        with ray_session(ray, num_cpus=num_cpus) as rt:
            parts["ray_start_s"] = time.perf_counter() - t
            cpus = rt.cluster_resources().get("CPU", 1)
            gop = gop_frames(s.gop, s.fps)
            ranges = segment_ranges(n_frames, segment_count(segments, n_frames, gop, cpus, s.fps), gop)
            log.info("segments: %d of about %d frames each on %s (%g CPUs)", len(ranges), n_frames // len(ranges),
                     ray, cpus)
            t = time.perf_counter()
            job_ref = rt.put(job)
            check_gpus(rt, s)
            task = rt.remote(num_cpus=1, num_gpus=1 if needs_gpu(s) else 0,
                             max_retries=TASK_RETRIES)(render_segment)
            pending = {task.remote(job_ref, a, b, 1): k for k, (a, b) in enumerate(ranges)}
            files: list[Path | None] = [None] * len(ranges)
            workers: list[SegmentResult] = []
            with Progress("render", n_frames, progress) as bar:
                while pending:
                    if cancel is not None and cancel.is_set():
                        for ref in pending:
                            rt.cancel(ref, force=True)
                        check_cancel(cancel)
                    done, _ = rt.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                    for ref in done:
                        k = pending.pop(ref)
                        result = _get(rt, ref, ranges[k])
                        files[k] = folder / f"segment-{k:05d}.mp4"
                        files[k].write_bytes(result.data)
                        workers.append(SegmentResult(b"", result.frames, result.seconds, result.node, result.peak_mb))
                        parts["bytes_back"] = parts.get("bytes_back", 0) + len(result.data)
                        bar.update(result.frames)
                        del result
            parts["segments_s"] = time.perf_counter() - t
        check_cancel(cancel)
        t = time.perf_counter()
        audio_track = audio if s.audio == "on" else None
        _, frames = concat_videos(files, path, audio=audio_track, overwrite=overwrite, inputs=plan.inputs)
        parts["join_s"] = time.perf_counter() - t
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if frames != n_frames:  # never expected: a join that lost or added frames is not a render
        from .errors import OutputError

        path.unlink(missing_ok=True)
        raise OutputError(f"{path}: joined {frames} frames, not the render's {n_frames}")
    import pickle

    parts.update(segments=len(ranges), cpus=cpus, bytes_job=len(pickle.dumps(job, protocol=5)),
                 worker_fps=[w.frames / w.seconds for w in workers], worker_seconds=[w.seconds for w in workers],
                 worker_peak_mb=[w.peak_mb for w in workers],
                 nodes=sorted({w.node for w in workers}))
    seconds = time.perf_counter() - t0
    log.info("segments: workers %.1f frames/s each (median), %.1f MB back, job %.2f MB, joined in %.2f s",
             float(np.median(parts["worker_fps"])), parts["bytes_back"] / 1e6, parts["bytes_job"] / 1e6,
             parts["join_s"])
    log.info("sync: not measured on segmented renders (run 'neuromv sync' on the video)")
    return RenderResult(path, n_frames, audio.duration, seconds, s, plan.where, None, parts)


def _peak_mb() -> float:
    """This process's peak resident memory in MB (Linux and macOS; 0 elsewhere)."""
    try:
        import resource
        import sys

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KB on Linux
    except (ImportError, OSError):
        return 0.0


def _get(rt, ref, frames: tuple[int, int]) -> SegmentResult:
    """The task's result; its failure (after Ray's retries) as one line naming the segment."""
    from .errors import NeuroMVError, OutputError

    try:
        return rt.get(ref)
    except Exception as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, NeuroMVError):
            raise type(cause)(f"segment of frames {frames[0]}-{frames[1] - 1}: {cause}") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OutputError(f"segment of frames {frames[0]}-{frames[1] - 1} failed on the cluster: {first}") from None
