"""Many songs into many videos: ``neuromv batch`` (docs/batch.md).

:func:`run_batch` reads as inputs -> songs (:func:`collect_songs`: files, folders, globs and CSV/JSONL manifests;
each song's output name and settings; everything checked before any work) -> renders, one after another in this
process (the default) or one Ray task per song (``ray='local'`` or a cluster's address, :mod:`neuromv.cluster`)
-> ``OUTDIR/<name>.mp4`` and the results manifest ``OUTDIR/results.jsonl``.

- Resumable: a video appears in OUTDIR only when complete (it is written to a temporary file beside it and
  renamed: :mod:`neuromv._files`), so an existing output *is* a complete one and is skipped (``overwrite``
  renders it again). A run killed mid-song leaves at most a hidden ``.<name>.<random>.part`` file, which the next
  run over the same OUTDIR deletes before it renders that song again.
- One bad song never stops the others: its row in results.jsonl says ``error`` with a one-line reason.
- On Ray, songs move through the object store both ways: the driver reads a song's bytes and puts them there,
  the worker writes them to a temporary folder, renders there and returns the video's bytes, which the driver
  writes into OUTDIR (atomically). No shared filesystem is needed. A worker holds one song's input and output at
  a time; the driver at most ``workers`` songs in flight (each at most :data:`~neuromv.limits.MAX_TRANSFER_BYTES`
  each way). A worker lost mid-song (killed, its machine gone) is retried by Ray
  (:data:`neuromv.cluster.TASK_RETRIES`); the video is still complete, since nothing reaches OUTDIR before a task
  has returned all of it.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .cluster import POLL_SECONDS, TASK_RETRIES, check_gpus, needs_gpu
from .errors import Interrupted, NeuroMVError, OutputError, ParameterError, summary
from .limits import MAX_BATCH_SONGS, MAX_MANIFEST_BYTES, MAX_TRANSFER_BYTES, show
from .progress import Progress, ProgressCallback, check_cancel
from .settings import SETTINGS, RenderSettings, check_shape, parse_size, with_quality

__all__ = ["run_batch", "collect_songs", "render_song_task", "Song", "SongResult", "BatchResult", "AUDIO_SUFFIXES",
           "MANIFEST_SUFFIXES", "MANIFEST_KEYS", "RESULTS_NAME", "TASK_DIR_PREFIX"]

log = logging.getLogger(__name__)

#: The files a folder or a glob contributes as songs (lower case); a file named explicitly is a song whatever its
#: extension (FFmpeg decides).
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".mka")
#: An input with one of these extensions is a manifest: a list of songs with per-song settings.
MANIFEST_SUFFIXES = (".csv", ".jsonl")
#: A manifest's keys besides the fields of :class:`~neuromv.settings.RenderSettings`: the song (a path, relative to
#: the manifest's folder), the output's name in OUTDIR, and the shorthands of the command line.
MANIFEST_KEYS = ("song", "output", "size", "quality", "look")
#: The results manifest's name in OUTDIR: one JSON object a line, appended as each song ends.
RESULTS_NAME = "results.jsonl"
#: A song's status in results.jsonl: rendered, failed, or skipped (its complete video was already there).
#: The video's extension when a song's output is not named (a manifest's ``output`` may name another container).
DEFAULT_SUFFIX = ".mp4"
#: A task's temporary folder on a worker is ``<tmp>/<prefix><pid>-<random>``; a task deletes those of dead
#: processes (a worker killed mid-song) before it starts.
TASK_DIR_PREFIX = "neuromv-batch-"
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Song:
    """One song of a batch.

    Attributes
    ----------
    input : Path
        The audio file.
    output : Path
        Its video in OUTDIR.
    settings : RenderSettings
        The batch's settings with the song's own (from a manifest) over them.
    source : str
        Where it was named, for messages: the input argument, or ``'songs.csv row 3'``.
    """

    input: Path
    output: Path
    settings: RenderSettings
    source: str


@dataclass(frozen=True)
class SongResult:
    """One row of results.jsonl.

    Attributes
    ----------
    input, output : str
        The song and its video.
    status : str
        'ok', 'error' or 'skipped'.
    error : str or None
        The reason, one line (status ``error`` only).
    seconds : float
        Wall time of the song (its render, and on Ray the transfers and the wait for a worker).
    frames : int or None
        Frames of the video (None when failed, or skipped without an earlier row saying it).
    """

    input: str
    output: str
    status: str
    error: str | None
    seconds: float
    frames: int | None

    def to_dict(self) -> dict:
        return {"input": self.input, "output": self.output, "status": self.status, "error": self.error,
                "seconds": round(self.seconds, 3), "frames": self.frames}


@dataclass(frozen=True)
class BatchResult:
    """What :func:`run_batch` did.

    Attributes
    ----------
    songs : tuple of SongResult
        One per song, in the order they ended.
    seconds : float
        Wall time of the batch.
    results : Path
        The results manifest (OUTDIR/results.jsonl).
    """

    songs: tuple[SongResult, ...]
    seconds: float
    results: Path

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.songs)

    @property
    def succeeded(self) -> bool:
        """Whether every song is done (rendered, or skipped as already complete)."""
        return self.count("error") == 0

    def summary(self) -> str:
        """One line: the counts, the time, where the results are."""
        n = len(self.songs)
        return (f"batch: {n} song{'s' if n != 1 else ''}: {self.count('ok')} rendered, {self.count('skipped')} "
                f"skipped (already complete), {self.count('error')} failed, in {self.seconds:.1f} s; "
                f"results in {self.results}")


# -- inputs -> songs ------------------------------------------------------------------------------------------------
def collect_songs(inputs: Sequence[str | os.PathLike], outdir: str | os.PathLike,
                  settings: RenderSettings | None = None, *, explicit: dict | None = None) -> list[Song]:
    """The songs of a batch, each with its output in ``outdir`` and its settings; nothing is written.

    Parameters
    ----------
    inputs : sequence of str or path
        Audio files (any extension), folders (their audio files, :data:`AUDIO_SUFFIXES`, walked recursively in
        name order, symbolic links to folders not followed), globs (``'songs/*.mp3'``, ``'**'`` recursive; their
        audio files and folders), and manifests (.csv or .jsonl: :data:`MANIFEST_KEYS` and settings per song).
        A song named twice other than by a manifest is rendered once.
    outdir : str or path
        The folder of the videos.
    settings : RenderSettings, optional
        Every song's settings; a manifest's values override them for its song.
    explicit : dict, optional
        The settings given explicitly (on the command line: not a look's, not a default): a manifest row's look
        replaces the command line's look but not these (:func:`_row_settings`).

    Returns
    -------
    list of Song
        In the order the inputs name them. Outputs are ``<stem>.mp4``; two songs of the same stem get
        ``<stem>.mp4`` and ``<stem>-2.mp4`` (then ``-3``...) in that order, so a rerun maps each song to the same
        video. Two manifest rows naming the same ``output`` are refused.

    Raises
    ------
    ParameterError
        An input that is no file, folder or matching glob; no songs at all; more than
        :data:`~neuromv.limits.MAX_BATCH_SONGS`; a manifest that cannot be read, or a row with an unknown setting,
        an impossible value, a missing song or a bad output name (one line naming the manifest and the row).
    """
    settings = settings or RenderSettings()
    outdir = Path(outdir)
    entries: list[tuple[Path, str | None, RenderSettings, str]] = []  # (song, output name or None, settings, source)
    seen: set[Path] = set()

    def add_plain(path: Path, source: str) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            entries.append((path, None, settings, source))
        _check_count(len(entries))

    for item in inputs:
        arg = os.fspath(item)
        path = Path(arg)
        if path.is_dir():
            for p in _walk(path):
                add_plain(p, arg)
        elif path.exists():
            if path.suffix.lower() in MANIFEST_SUFFIXES:
                entries += _read_manifest(path, settings, explicit or {})
                _check_count(len(entries))
            else:
                add_plain(path, arg)
        elif any(c in arg for c in _GLOB_CHARS):
            matches = sorted(glob.iglob(arg, recursive=True))
            for m in matches:
                p = Path(m)
                if p.is_dir():
                    for q in _walk(p):
                        add_plain(q, arg)
                elif p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES:
                    add_plain(p, arg)
        else:
            raise ParameterError(f"{arg}: no such file or folder, and no glob that matches")
    if not entries:
        shown = ", ".join(os.fspath(i) for i in inputs[:3]) + (", ..." if len(inputs) > 3 else "")
        raise ParameterError(f"no audio files found in {shown or 'the inputs'}: give songs "
                             f"({', '.join(AUDIO_SUFFIXES[:6])}, ...), folders or globs of them, or a .csv or "
                             f".jsonl manifest")
    return _name_outputs(entries, outdir)


def _check_count(n: int) -> None:
    if n > MAX_BATCH_SONGS:
        raise ParameterError(f"more than {MAX_BATCH_SONGS} songs in one batch; split it into several")


def _walk(folder: Path) -> Iterable[Path]:
    """A folder's audio files, recursively, in name order (symbolic links to folders not followed)."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file():
                yield p


def _name_outputs(entries: list, outdir: Path) -> list[Song]:
    """Output paths: the manifests' names first (a name given twice is an error), then ``<stem>.mp4`` for the
    others, with ``-2``, ``-3``... when taken (compared without case: one name on a case-insensitive disk)."""
    taken: dict[str, str] = {}
    for _song, name, _s, source in entries:
        if name is not None:
            if name.lower() in taken:
                raise ParameterError(f"{source}: output {name!r} is also the output of {taken[name.lower()]}")
            taken[name.lower()] = source
    songs = []
    for song, name, s, source in entries:
        if name is None:
            stem, k = song.stem or "song", 1
            name = stem + DEFAULT_SUFFIX
            while name.lower() in taken:
                k += 1
                name = f"{stem}-{k}{DEFAULT_SUFFIX}"
            taken[name.lower()] = source
        songs.append(Song(song, outdir / name, s, source))
    return songs


def _read_manifest(path: Path, base: RenderSettings,
                   explicit: dict) -> list[tuple[Path, str | None, RenderSettings, str]]:
    """A CSV (a header row, then a song a row: header row 1, first song row 2) or JSONL (an object a line: line N
    is row N) manifest's songs, each row checked."""
    data = _read_limited(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ParameterError(f"{path}: not UTF-8 text; a manifest is a CSV or JSONL file") from None
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\0extra")
            header = reader.fieldnames or []
            for row in reader:
                rows.append((reader.line_num, row))
        except csv.Error as e:
            raise ParameterError(f"{path}: not a CSV file ({summary(e)})") from None
        if "song" not in header:
            raise ParameterError(f"{path} row 1: no 'song' column; the header names the columns: song (a path), "
                                 f"optional output, and settings")
        _check_keys([h for h in header if h], f"{path} row 1")
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise ParameterError(f"{path} row {n}: not JSON ({summary(e)})") from None
            if not isinstance(row, dict):
                raise ParameterError(f"{path} row {n}: must be a JSON object of song, output and settings, "
                                     f"not {show(row)}")
            rows.append((n, row))
    folder = path.parent
    out = []
    for n, row in rows:
        where = f"{path} row {n}"
        if "\0extra" in row:
            raise ParameterError(f"{where}: more values than the header has columns")
        out.append(_manifest_song(row, where, folder, base, explicit, csv_text=path.suffix.lower() == ".csv"))
    return out


def _read_limited(path: Path) -> bytes:
    """A manifest's bytes, if it is a regular file of at most MAX_MANIFEST_BYTES (never a FIFO or a device)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ParameterError(f"{path}: cannot be read ({summary(e)})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ParameterError(f"{path}: not a regular file; a manifest is a CSV or JSONL file")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise ParameterError(f"{path}: is {st.st_size / 2**20:.1f} MB, over the limit of "
                             f"{MAX_MANIFEST_BYTES // 2**20} MB for a manifest; split it")
    with open(path, "rb") as f:
        return f.read(MAX_MANIFEST_BYTES + 1)[:MAX_MANIFEST_BYTES]


def _check_keys(keys: Iterable, where: str) -> None:
    known = {row.name for row in SETTINGS}
    unknown = [k if isinstance(k, str) and k.isidentifier() else show(k) for k in keys
               if k not in known and k not in MANIFEST_KEYS]
    if unknown:
        text = ", ".join(unknown)
        text = text if len(text) <= 120 else text[:117] + "..."
        raise ParameterError(f"{where}: unknown setting(s) {text}; a manifest holds song, "
                             f"output, size, quality, look and the settings of RenderSettings (docs/batch.md)")


def _manifest_song(row: dict, where: str, folder: Path, base: RenderSettings, explicit: dict, *, csv_text: bool):
    """(song, output name or None, settings, where) of one manifest row."""
    if csv_text:  # an empty cell: not given
        row = {k: v.strip() for k, v in row.items() if isinstance(v, str) and v.strip() != ""}
    else:
        _check_keys(row, where)
    song = row.get("song")
    if not isinstance(song, str) or not song:
        raise ParameterError(f"{where}: no song (a path, relative to the manifest's folder)")
    path = folder / song
    if not path.is_file():
        raise ParameterError(f"{where}: song {song!r} not found ({path} is no file)")
    name = row.get("output")
    if name is not None:
        name = _output_name(name, where)
    try:
        settings = _row_settings(base, row, folder, csv_text, explicit)
    except ParameterError as e:
        raise ParameterError(f"{where}: {e}") from None
    return path, name, settings, where


def _output_name(name, where: str) -> str:
    """A manifest's output: a plain file name in OUTDIR (no folder, not hidden), ``.mp4`` added if it has no
    extension; the extension must be a video container's."""
    from .animated import ANIMATED
    from .video import CONTAINERS

    if not isinstance(name, str) or not name or len(name) > 255 or any(c in name for c in "/\\\0") \
            or name.startswith("."):
        raise ParameterError(f"{where}: output must be a file name in the output folder (no folder, not hidden), "
                             f"not {show(name)}")
    suffix = Path(name).suffix.lower()
    if not suffix:
        return name + DEFAULT_SUFFIX
    allowed = tuple(CONTAINERS) + tuple(ANIMATED)
    if suffix not in allowed:
        raise ParameterError(f"{where}: output {name!r} must end in {', '.join(allowed)} (or have no extension)")
    return name


def _row_settings(base: RenderSettings, row: dict, folder: Path, csv_text: bool,
                  explicit: dict | None = None) -> RenderSettings:
    """``base`` with a manifest row's look, quality, size and settings over it, in the command line's precedence:
    a row's look replaces the command line's look (the settings it leaves out take their defaults), the options
    given explicitly (``explicit``) still override it, and the row's own settings override everything. A row's
    size must have the format's shape (as ``--size`` with ``--format``). CSV text is converted by each setting's
    kind."""
    rows = {r.name: r for r in SETTINGS}
    settings = base
    look = row.get("look")
    if look is not None:
        from .looks import LOOK_SETTINGS, apply_look

        if isinstance(look, str) and look.lower().endswith(".toml") and not os.path.isabs(look):
            look = os.fspath(folder / look)
        defaults = RenderSettings()
        settings = replace(settings, **{k: getattr(defaults, k) for k in LOOK_SETTINGS})  # no other look's values
        settings = apply_look(settings, look)
        settings = replace(settings, **{k: v for k, v in (explicit or {}).items() if k in LOOK_SETTINGS})
    if row.get("quality") is not None:
        settings = with_quality(settings, row["quality"])
    values: dict[str, Any] = {}
    if row.get("size") is not None:
        values["width"], values["height"] = parse_size(row["size"])
    for key, value in row.items():
        if key in rows:
            values[key] = _from_text(rows[key], value) if csv_text else value
    fmt = values.get("format", settings.format)
    if row.get("size") is not None and fmt is not None:
        check_shape(values["width"], values["height"], fmt, "size")
    return replace(settings, **values)


def _from_text(row, text: str):
    """A CSV cell as the setting's kind (``none`` for a setting that may be None)."""
    if (row.optional or row.default is None) and text.lower() == "none":
        return None
    if row.kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ParameterError(f"{row.name} must be true or false, not {show(text)}")
    if row.kind in (int, float):
        try:
            return row.kind(text)
        except ValueError:
            raise ParameterError(f"{row.name} must be {'an integer' if row.kind is int else 'a number'}, "
                                 f"not {show(text)}") from None
    return text


def _check_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir}: is a file, not a folder; give the folder for the videos (-o OUTDIR)")
    parent = outdir.parent if not outdir.exists() else outdir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{outdir}: {parent} is a file, not a folder")


def _prepare_outdir(outdir: Path, songs: Sequence[Song]) -> None:
    """Make OUTDIR; delete the temporary files that a killed run left for these songs' videos."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{outdir}: cannot make the folder ({summary(e)})") from None
    names = {s.output.name for s in songs}
    for p in outdir.glob(".*.part"):
        stem = p.name[1:].rsplit(".", 2)[0]  # .<name>.<random>.part (neuromv._files.AtomicFile)
        if stem in names:
            log.info("removing %s, a partial video of an interrupted run", p)
            p.unlink(missing_ok=True)


class _Results:
    """results.jsonl, appended a row at a time (flushed and synced: a killed run keeps every row written)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[SongResult] = []
        self._file = open(path, "a", encoding="utf-8")

    def add(self, row: SongResult) -> None:
        self.rows.append(row)
        self._file.write(json.dumps(row.to_dict()) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if row.status == "error":
            log.warning("%s", row.error if row.error.startswith(row.input) else f"{row.input}: {row.error}")
        else:
            log.info("%s: %s", row.input, "skipped (complete)" if row.status == "skipped" else
                     f"{row.frames} frames in {row.seconds:.1f} s")

    def close(self) -> None:
        self._file.close()


def _earlier_frames(path: Path) -> dict[str, int]:
    """output -> frames, from an earlier run's ``ok`` rows (for the skipped songs' rows); unreadable rows are
    ignored (results.jsonl is a log, not an input)."""
    frames: dict[str, int] = {}
    if not path.is_file() or path.stat().st_size > 64 * MAX_MANIFEST_BYTES:
        return frames
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
                if row.get("status") == "ok" and isinstance(row.get("frames"), int):
                    frames[str(row["output"])] = row["frames"]
            except (ValueError, AttributeError):
                continue
    return frames


# -- the run ----------------------------------------------------------------------------------------------------
def run_batch(
    inputs: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    settings: RenderSettings | None = None,
    *,
    ray: str | None = None,
    workers: int | None = None,
    worker_cpus: int = 1,
    overwrite: bool = False,
    progress: bool | ProgressCallback = False,
    cancel: threading.Event | None = None,
    image=None,
    model: str | os.PathLike | None = None,
    cache: bool = True,
    explicit: dict | None = None,
) -> BatchResult:
    """Render every song of ``inputs`` into ``outdir`` (module docstring; docs/batch.md).

    Parameters
    ----------
    inputs, outdir, settings
        As in :func:`collect_songs`.
    ray : str, optional
        None: one song after another in this process (each render uses every core). ``'local'``: a Ray instance
        started for the batch; ``'HOST:PORT'``: an existing cluster (:func:`neuromv.cluster.ray_session`). A Ray
        instance already initialised in this process is used as it is.
    workers : int, optional
        Ray only: most songs in flight at once (default: the cluster's CPUs / ``worker_cpus``).
    worker_cpus : int
        Ray only: the CPUs each song's task declares (its render's threads); a task on a song whose device is
        ``cuda`` declares a GPU too.
    overwrite : bool
        Render every song again, replacing its video; default: complete videos are skipped.
    progress : bool or callable
        True: a bar over songs and one over frames. A callable gets ``(stage, done, total)`` with the stages
        ``'songs'`` and ``'frames'`` (frames' total None).
    cancel : threading.Event, optional
        Once set, the batch stops (the song in progress leaves no file) and raises Interrupted; the rows written
        stay.
    image, model, cache
        As in :func:`neuromv.render`, for every song (on Ray an image or model file is sent with each task).
    explicit : dict, optional
        As in :func:`collect_songs`.

    Returns
    -------
    BatchResult

    Raises
    ------
    ParameterError, OutputError
        Before any work: bad inputs or manifest rows (:func:`collect_songs`), OUTDIR a file, Ray missing or its
        address unreachable, bad ``workers`` or ``worker_cpus``.
    Interrupted
        ``cancel`` was set.
    """
    t0 = time.perf_counter()
    outdir = Path(outdir)
    _check_outdir(outdir)
    songs = collect_songs(inputs, outdir, settings, explicit=explicit)
    if ray is None and (workers is not None or worker_cpus != 1):
        raise ParameterError("--workers and --worker-cpus are for --ray; without it, songs render one after "
                             "another, each on every core")
    for name, value in (("--workers", workers), ("--worker-cpus", worker_cpus)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096):
            raise ParameterError(f"{name} must be an integer from 1 to 4096, not {show(value)}")
    if ray is None:
        _prepare_outdir(outdir, songs)
        return _run(songs, outdir, t0, overwrite, progress, cancel,
                    lambda todo, record, bar: _run_local(todo, record, bar, overwrite, cancel, image, model, cache))
    from .cluster import check_where, ray_session

    ray = check_where(ray)  # Ray missing, or an address that does not answer: one line, even where Ray is running
    payload = _payload(image, model)  # read before any work: a bad image or model is one line
    num_cpus = workers * worker_cpus if (ray == "local" and workers) else None
    with ray_session(ray, num_cpus=num_cpus) as session:
        _prepare_outdir(outdir, songs)
        return _run(songs, outdir, t0, overwrite, progress, cancel,
                    lambda todo, record, bar: _run_ray(session, todo, record, bar, overwrite, cancel, payload,
                                                        cache, workers, worker_cpus))


def _run(songs: list[Song], outdir: Path, t0: float, overwrite: bool, progress, cancel, runner) -> BatchResult:
    """The part common to both runners: results.jsonl, the skipped songs, the bars."""
    results = _Results(outdir / RESULTS_NAME)
    earlier = _earlier_frames(results.path) if not overwrite else {}
    try:
        with Progress("songs", len(songs), progress, unit="song") as song_bar, \
                Progress("frames", None, progress) as frame_bar:
            def record(row: SongResult) -> None:
                results.add(row)
                song_bar.update()

            todo = []
            for s in songs:
                if not overwrite and s.output.is_file():
                    record(SongResult(str(s.input), str(s.output), "skipped", None, 0.0,
                                      earlier.get(str(s.output))))
                else:
                    todo.append(s)
            check_cancel(cancel)
            runner(todo, record, frame_bar)
    finally:
        results.close()
    return BatchResult(tuple(results.rows), time.perf_counter() - t0, results.path)


def _error_text(e: BaseException) -> str:
    if isinstance(e, NeuroMVError):
        return summary(e)
    if type(e).__module__.split(".")[0] == "ray":  # a task lost for good: its retries spent, or cancelled
        return f"Ray: {type(e).__name__}: {summary(e)}"
    return f"unexpected {type(e).__name__}: {summary(e)}"


def _run_local(songs: list[Song], record, frame_bar: Progress, overwrite: bool, cancel, image, model, cache) -> None:
    """One song after another, in this process; the frames bar moves frame by frame."""
    from .pipeline import render

    for s in songs:
        check_cancel(cancel)
        t = time.perf_counter()
        shown = [0]

        def frames(stage: str, done: int, total, shown=shown) -> None:
            if stage == "render" and done > shown[0]:
                frame_bar.update(done - shown[0])
                shown[0] = done

        try:
            r = render(s.input, s.output, s.settings, overwrite=overwrite, progress=frames, cancel=cancel,
                       image=image, model=model, cache=cache)
        except Interrupted:
            raise
        except Exception as e:  # noqa: BLE001 - one bad song never stops the others
            log.debug("%s failed", s.input, exc_info=True)
            record(SongResult(str(s.input), str(s.output), "error", _error_text(e), time.perf_counter() - t, None))
            continue
        record(SongResult(str(s.input), str(s.output), "ok", None, time.perf_counter() - t, r.frames))


def _payload(image, model) -> dict:
    """The image and model for the tasks: files read here (within their limits) and sent as bytes."""
    from .image import ImageSource

    def ship(value):
        if isinstance(value, (str, os.PathLike)) and os.fspath(value).strip().lower() not in ("none", "auto", ""):
            return ImageSource(ImageSource(Path(value), os.fspath(value)).read_bytes(), os.fspath(value))
        return value

    out: dict[str, Any] = {"image": ({k: ship(v) for k, v in image.items()} if isinstance(image, dict)
                                     else ship(image)), "model": None}
    if model is not None:
        from ._files import open_input_file
        from .limits import max_model_bytes

        with open_input_file(model, "model", max_model_bytes()) as f:
            out["model"] = (Path(model).name, f.read())
    return out


def _read_song(path: Path) -> bytes:
    from ._files import open_input_file

    with open_input_file(path, "audio") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_TRANSFER_BYTES:
            raise ParameterError(f"{path}: is {size / 2**20:.0f} MB, over the limit of "
                                 f"{MAX_TRANSFER_BYTES // 2**20} MB a song may have to travel to a Ray worker")
        return f.read()


def _run_ray(ray, songs: list[Song], record, frame_bar: Progress, overwrite: bool, cancel, payload: dict,
             cache: bool, workers: int | None, worker_cpus: int) -> None:
    """One Ray task per song, at most ``workers`` in flight; the videos written here as their bytes come back (the
    frames bar moves a song at a time)."""
    from ._files import atomic_file

    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", 0))
    if worker_cpus > cpus:
        raise ParameterError(f"--worker-cpus {worker_cpus} is more than the Ray cluster's {cpus} CPUs")
    for s in songs:
        check_gpus(ray, s.settings)
    workers = workers or max(1, cpus // worker_cpus)
    task = ray.remote(num_cpus=worker_cpus, max_retries=TASK_RETRIES)(render_song_task)
    model_ref = ray.put(payload["model"]) if payload["model"] is not None else None
    pending, flight = deque(songs), {}
    log.info("ray: %d song(s), up to %d at a time, %d CPU(s) each", len(songs), workers, worker_cpus)
    try:
        while pending or flight:
            while pending and len(flight) < workers:
                s = pending.popleft()
                t = time.perf_counter()
                try:
                    data = ray.put(_read_song(s.input))
                except NeuroMVError as e:
                    record(SongResult(str(s.input), str(s.output), "error", summary(e), 0.0, None))
                    continue
                ref = task.options(num_gpus=1 if needs_gpu(s.settings) else 0).remote(
                    s.input.name, data, s.output.name, s.settings, str(s.input), payload["image"], model_ref, cache)
                flight[ref] = (s, t, data)
            if not flight:
                continue
            ready, _ = ray.wait(list(flight), num_returns=1, timeout=POLL_SECONDS)
            if cancel is not None and cancel.is_set():
                for ref in flight:
                    ray.cancel(ref, force=True)
                check_cancel(cancel)
            for ref in ready:
                s, t, _data = flight.pop(ref)
                try:
                    out = ray.get(ref)
                    if out["status"] == "ok":
                        with atomic_file(s.output, overwrite=overwrite) as tmp:
                            Path(tmp).write_bytes(out["video"])
                except Exception as e:  # noqa: BLE001 - a task lost for good (retries spent), a full disk
                    log.debug("%s failed", s.input, exc_info=True)
                    out = {"status": "error", "error": _error_text(e)}
                del ref
                row = SongResult(str(s.input), str(s.output), out["status"], out.get("error"),
                                 time.perf_counter() - t, out.get("frames"))
                out = None  # the video's bytes go now
                record(row)
                if row.frames:
                    frame_bar.update(row.frames)
    finally:
        for ref in flight:
            ray.cancel(ref, force=True)


def render_song_task(name: str, song: bytes, output: str, settings: RenderSettings, label: str, image=None,
                     model: tuple[str, bytes] | None = None, cache: bool = True) -> dict:
    """A batch song's Ray task (it runs on a worker; also callable in-process): write the song's bytes to a
    temporary folder, render it there and return the video's bytes.

    Parameters
    ----------
    name : str
        The song's file name (its extension helps FFmpeg; its folder may hold a cover).
    song : bytes
        The song's file.
    output : str
        The video's file name (its extension chooses the container).
    settings : RenderSettings
    label : str
        The song's path on the driver: error messages name it instead of the temporary copy.
    image, cache
        As in :func:`neuromv.render` (an image file arrives as an :class:`~neuromv.image.ImageSource` of bytes).
    model : (str, bytes), optional
        A model file's name and bytes.

    Returns
    -------
    dict
        ``status`` ``'ok'`` with ``video`` (bytes), ``frames``, ``duration`` and ``seconds``; or ``'error'`` with
        ``error``, one line (a song's own error: not retried).
    """
    from .pipeline import render

    t0 = time.perf_counter()
    _sweep_task_dirs()
    folder = tempfile.mkdtemp(prefix=f"{TASK_DIR_PREFIX}{os.getpid()}-")
    try:
        path = Path(folder) / name
        path.write_bytes(song)
        del song
        model_path = None
        if model is not None:
            model_path = Path(folder) / model[0]
            model_path.write_bytes(model[1])
        out = Path(folder) / output
        try:
            r = render(path, out, settings, image=image, model=model_path, cache=cache)
            size = out.stat().st_size
            if size > MAX_TRANSFER_BYTES:
                raise OutputError(f"{label}: the video is {size / 2**20:.0f} MB, over the limit of "
                                  f"{MAX_TRANSFER_BYTES // 2**20} MB a video may have to travel back from a worker")
        except Interrupted:
            raise
        except Exception as e:  # noqa: BLE001 - a song's own failure is its result
            log.debug("%s failed", label, exc_info=True)
            return {"status": "error", "error": _error_text(e).replace(str(path), label).replace(folder, "")}
        return {"status": "ok", "video": out.read_bytes(), "frames": r.frames, "duration": r.duration,
                "seconds": time.perf_counter() - t0}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sweep_task_dirs() -> None:
    """Delete the temporary folders of tasks whose worker died mid-song (the pid in the name is gone)."""
    for d in Path(tempfile.gettempdir()).glob(f"{TASK_DIR_PREFIX}*"):
        try:
            pid = int(d.name[len(TASK_DIR_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
