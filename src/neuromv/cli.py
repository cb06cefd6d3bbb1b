"""The command line: ``neuromv render``, ``neuromv fit``, ``neuromv demo``, ``neuromv sync``... A thin layer over
the library.

Heavy libraries (torch, librosa, av) are imported inside the commands, so ``neuromv --help`` is instant.
Every expected failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from . import __version__
from .errors import Interrupted, NeuroMVError

log = logging.getLogger("neuromv")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 1 (the project's rule for every bad input)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(1, f"neuromv: error: {message} (see '{self.prog} --help')\n")


class _Given(argparse.Action):
    """Stores the value like argparse's 'store' and records the option as given (``namespace._given``): an option
    the user gave overrides a look, its default does not (:func:`settings_from_args`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        given_options(namespace).add(self.dest)


class _GivenConst(argparse.Action):
    """argparse's 'store_const' (default: 'store_true'), recording the option as given (:class:`_Given`)."""

    def __init__(self, option_strings, dest, const=True, default=False, help=None):
        super().__init__(option_strings, dest, nargs=0, const=const, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const)
        given_options(namespace).add(self.dest)


def given_options(args: argparse.Namespace) -> set[str]:
    """The settings (dest names) whose options were given on the command line, not left at their defaults."""
    if "_given" not in vars(args):
        args._given = set()
    return args._given


def add_setting_option(group, row, defaults, flag: str | None = None, help: str | None = None) -> None:
    """Add the command-line option of one row of the settings table (:class:`neuromv.settings.Setting`) to an
    argparse group: its flag (or ``flag``), type, metavar, choices and help (or ``help``), with the default of
    ``defaults`` (a RenderSettings) appended to the help. A setting that ``--quality`` also sets (crf, preset) has
    no argparse default: :func:`settings_from_args` takes the preset's, or the defaults'."""
    value = getattr(defaults, row.name)
    text = help or row.help
    if row.default_text != "":
        shown = row.default_text or (format(value, "g") if isinstance(value, float) else str(value))
        text += f" (default: {shown})"
    kw: dict = dict(help=text, dest=row.name)
    if row.kind is bool:
        kw.update(action=_GivenConst, default=value)
    else:
        kw.update(action=_Given, default=None if row.quality else value, metavar=row.metavar)
        if row.kind is not str:
            kw["type"] = row.kind
        if row.choices and row.cli_choices:
            kw["choices"] = row.choices
    group.add_argument(flag or row.flag, **kw)


def _add_render_options(p: argparse.ArgumentParser, defaults) -> None:
    """Options shared by ``render`` and ``demo``: every row of the settings table with a flag
    (:data:`neuromv.settings.SETTINGS`, in its groups and order), and the options of the command line only
    (--quality, --size, --image, --model, --no-cache, --overwrite). Defaults come from the RenderSettings given."""
    from .settings import GROUPS, QUALITY, SETTINGS

    p.set_defaults(_defaults=defaults)
    for key, title in GROUPS.items():  # group by group, so that the usage line follows --help's order
        g = p.add_argument_group(title)
        if key == "picture":
            sizes = {name: f"{q['width']}x{q['height']} {q['preset']} crf {q['crf']}" for name, q in QUALITY.items()}
            g.add_argument("--quality", choices=tuple(QUALITY),
                           help=f"preset of size, x264 preset and crf: draft {sizes['draft']} (a quick look at a "
                                f"whole song), standard {sizes['standard']}, high {sizes['high']} (in 16:9: "
                                "--format turns the size, keeping its shorter side); --size, --preset and --crf "
                                "override it")
            g.add_argument("--size", metavar="WxH", help=f"video size (default: {defaults.width}x{defaults.height}); "
                                                         "it wins over --quality's and --format's size, and with "
                                                         "--format it must have its shape; odd sizes are rounded "
                                                         "up to even")
            _add_look_option(g)
        elif key == "image":
            g.add_argument("--image", metavar="PATH|none|STEM=PATH", action="append",
                           help="picture the video should look like (PNG, JPEG, WebP, GIF, BMP, TIFF). Default: the "
                                "song's cover art (embedded, or cover.*/folder.* beside it) if it has one. 'none': "
                                "abstract. ('demo' in 'neuromv demo': a generated cover). With --stems, repeat as "
                                "STEM=PATH for an image per stem")
            g.add_argument("--model", metavar="FILE", help="a model saved by 'neuromv fit' (instead of --image)")
        elif key == "structure":
            g.add_argument("--cues", metavar="FILE",
                           help="the song's cues (tempo, beats, bars, sections, drops) from 'neuromv analyze', as "
                                "given or edited; default: the song is analysed (and the result cached)")
        for row in SETTINGS:
            if row.group == key and row.flag is not None:
                add_setting_option(g, row, defaults)
        if key == "image":
            g.add_argument("--no-cache", action="store_true",
                           help="fit again (and analyse the song again) instead of reusing the cache")
        elif key == "encoding":
            g.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
            g.add_argument("--no-audio", dest="audio", action=_GivenConst, const="off", default=None,
                           help="a silent video: the same as --audio off")


def _add_look_option(g) -> None:
    from .looks import LOOKS

    g.add_argument("--look", metavar="NAME|FILE.toml",
                   help=f"a bundle of settings: built in ({', '.join(LOOKS)}) or a look file ('neuromv looks'); "
                        "options given explicitly override it")


def _add_fit_options(g, defaults) -> None:
    """``--fit``, ``--background`` and ``--fit-quality`` (rows of the settings table) for ``fit``."""
    from .settings import SETTINGS

    for row in SETTINGS:
        if row.name in ("fit", "background", "fit_quality"):
            add_setting_option(g, row, defaults)


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only errors; no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug messages and tracebacks")


def build_parser() -> argparse.ArgumentParser:
    from .settings import RenderSettings  # light: no torch

    parser = _Parser(prog="neuromv", description="Turn a song into an audio-reactive CPPN music video.")
    parser.add_argument("--version", action="version", version=f"neuromv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("render", help="render a song into a video",
                       description="Render SONG (wav, mp3, flac, ogg, opus, m4a, ...) into an H.264 video with "
                                   "the song as its audio.")
    r.add_argument("song", help="audio file")
    r.add_argument("-o", "--output", required=True,
                   help="video file to write (.mp4, .mov, .mkv; .webp or .gif: animated, for loops)")
    _add_render_options(r, RenderSettings())
    c = r.add_argument_group("cluster (docs/cluster.md)")
    c.add_argument("--ray", metavar="local|ADDRESS",
                   help="render in segments on Ray: 'local' (a Ray instance for this run) or a cluster's HOST:PORT; "
                        "needs pip install 'neuromv[cluster]'")
    c.add_argument("--segments", metavar="N|auto",
                   help="with --ray: frame ranges of whole GOPs (--gop) rendered on the workers and joined (default: "
                        "auto, one per cluster CPU; none over 30 s of video)")
    _add_verbosity(r)
    r.set_defaults(func=_cmd_render)

    _add_batch_command(sub, RenderSettings())

    from .demo import DEMO_SETTINGS

    d = sub.add_parser("demo", help="render the built-in demo song (no input needed)",
                       description="Render a 15-second piece of music that NeuroMV generates itself.")
    d.add_argument("-o", "--output", default="demo.mp4", help="video file to write (default: %(default)s)")
    _add_render_options(d, DEMO_SETTINGS)
    _add_verbosity(d)
    d.set_defaults(func=_cmd_demo)

    _add_looks_command(sub)

    f = sub.add_parser("fit", help="fit a picture network to an image and save it as a model",
                       description="Fit a picture network to IMAGE and save it (safetensors) for "
                                   "'neuromv render --model'.")
    f.add_argument("image", help="image file (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    f.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    defaults = RenderSettings()
    f.add_argument("--size", default=f"{defaults.width}x{defaults.height}", metavar="WxH",
                   help="size (aspect ratio) of the videos it is for (default: %(default)s)")
    _add_fit_options(f, defaults)
    f.add_argument("--steps", type=int, default=None,
                   help="training steps, overriding the fit quality's (default: the quality's)")
    f.add_argument("--seed", type=int, default=defaults.seed, help="seed of the initial weights (default: %(default)s)")
    f.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    _add_verbosity(f)
    f.set_defaults(func=_cmd_fit)

    a = sub.add_parser("analyze", help="find a song's tempo, beats, bars, sections and drops (cues JSON)",
                       description="Analyse SONG's structure (tempo and its changes, beats, downbeats and bars, "
                                   "onsets per band, sections with repetition labels, energy, builds, drops, "
                                   "silence) and write it as JSON (docs/cues.md) to edit and give to "
                                   "'neuromv render --cues'.")
    a.add_argument("song", help="audio file")
    a.add_argument("-o", "--output", required=True, help="cues file to write (.json)")
    a.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    _add_verbosity(a)
    a.set_defaults(func=_cmd_analyze)

    s = sub.add_parser("separate", help="split a song into stems (vocals / accompaniment, ...)",
                       description="Split SONG into stems and write DIR/<stem>.wav for each.")
    s.add_argument("song", help="audio file")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the stem files (made if missing)")
    s.add_argument("--separator", default="spleeter", choices=("spleeter", "hpss", "demucs"),
                   help="spleeter: vocals/accompaniment (default); hpss: harmonic/percussive, no model; "
                        "demucs: drums/bass/other/vocals (optional extra, downloads its model)")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    s.add_argument("--overwrite", action="store_true", help="replace existing stem files")
    _add_verbosity(s)
    s.set_defaults(func=_cmd_separate)

    y = sub.add_parser("sync", help="measure how closely a video's motion follows its song",
                       description="Measure VIDEO's sync with SONG (default: the video's own audio track): the lag, "
                                   "the correlation of motion and onsets, the Beat Alignment Score and the beat "
                                   "F-measure (docs/sync.md).")
    y.add_argument("video", help="video file")
    y.add_argument("song", nargs="?", help="audio file (default: the video's audio track)")
    y.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_verbosity(y)
    y.set_defaults(func=_cmd_sync)

    v = sub.add_parser("serve", help="live preview in the browser (a local web app)",
                       description="Start a local web server: drop a song on the page, see the CPPN play with it, "
                                   "tune it, and render the video.")
    v.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only)")
    v.add_argument("--port", type=int, default=8765, help="port (default: %(default)s)")
    v.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this host name (repeatable; the local names and the --host "
                        "address are always answered)")
    v.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="fits, separations and renders run at a time; others wait (default: %(default)s)")
    v.add_argument("--max-upload", type=int, default=512, metavar="MB",
                   help="largest song accepted, in MB (default: %(default)s)")
    v.add_argument("--max-image", type=int, default=32, metavar="MB",
                   help="largest image accepted, in MB (default: %(default)s)")
    v.add_argument("--max-storage", type=int, default=2048, metavar="MB",
                   help="the server's files (songs, stems, images, videos) stay under this; the least recently "
                        "used go first (default: %(default)s)")
    v.add_argument("--max-connections", type=int, default=64, metavar="N",
                   help="open connections at once; more are answered 503 (default: %(default)s)")
    _add_verbosity(v)
    v.set_defaults(func=_cmd_serve)
    return parser


def _add_batch_command(sub, defaults) -> None:
    """``neuromv batch INPUTS... -o OUTDIR [render options] [--ray local|ADDRESS] [--workers N] [--worker-cpus N]``
    (:mod:`neuromv.batch`)."""
    b = sub.add_parser("batch", help="render many songs into many videos (here, or on a Ray cluster)",
                       description="Render every song of INPUTS into OUTDIR/<name>.mp4, skipping videos already "
                                   "complete, and log each song's result in OUTDIR/results.jsonl (docs/batch.md). "
                                   "The render options apply to every song; a manifest's per-song settings override "
                                   "them. Exit status 1 if any song failed.")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, folders (their audio files), globs ('songs/*.mp3'), or a .csv/.jsonl manifest "
                        "(song, output, settings per song)")
    b.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the videos (made if missing)")
    g = b.add_argument_group("where it runs")
    g.add_argument("--ray", metavar="local|ADDRESS",
                   help="one Ray task per song: 'local' starts a Ray instance for the run, HOST:PORT joins a "
                        "cluster (needs pip install 'neuromv[cluster]'); default: here, one song after another")
    g.add_argument("--workers", type=int, metavar="N",
                   help="with --ray: most songs at once (default: the cluster's CPUs / --worker-cpus)")
    g.add_argument("--worker-cpus", type=int, default=1, metavar="N",
                   help="with --ray: CPUs each song's task takes (its render's threads) (default: %(default)s)")
    _add_render_options(b, defaults)
    _add_verbosity(b)
    b.set_defaults(func=_cmd_batch)


def _add_looks_command(sub) -> None:
    """``neuromv looks [list]``, ``neuromv looks show NAME|FILE``, ``neuromv looks save FILE [options]``."""
    from .looks import LOOK_SETTINGS
    from .settings import SETTINGS, RenderSettings

    k = sub.add_parser("looks", help="list the built-in looks, print one as TOML, or save settings as a look file",
                       description="Looks are bundles of settings ('--look NAME|FILE.toml' on render and demo; "
                                   "docs/looks.md). 'neuromv looks' lists the built-in ones.")
    k.set_defaults(func=_cmd_looks, quiet=False, verbose=False)
    actions = k.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.add_parser("list", help="the built-in looks and what they set (the default action)")
    show = actions.add_parser("show", help="print a look (built in or a file) as TOML, to edit and save",
                              description="Print a look as TOML (a look file's text).")
    show.add_argument("look", metavar="NAME|FILE.toml")
    save = actions.add_parser("save", help="save settings as a look file",
                              description="Write FILE.toml: the --look given (if any) with the options given over "
                                          "it; only settings that differ from the defaults are written.")
    save.add_argument("output", metavar="FILE.toml", help="look file to write")
    save.add_argument("--name", help="the look's name (default: the file's name)")
    _add_look_option(save)
    save.add_argument("--overwrite", action="store_true", help="replace the file if it exists")
    g = save.add_argument_group("settings a look holds")
    defaults = RenderSettings()
    for row in SETTINGS:
        if row.name in LOOK_SETTINGS and row.flag is not None:
            add_setting_option(g, row, defaults)


def settings_from_args(args: argparse.Namespace):
    """The RenderSettings of ``render``/``demo``'s options: the command's defaults, then the ``--quality`` preset's
    size, crf and x264 preset, then the ``--look``'s values, then every option given explicitly; the size from
    ``--size``, else ``--format`` at the quality (:data:`neuromv.settings.FORMATS`), else the preset's. ``--size``
    with ``--format`` must have its shape (:func:`neuromv.settings.check_shape`)."""
    from .settings import SETTINGS, RenderSettings, check_shape, format_size, parse_size, with_quality

    base = with_quality(args._defaults, args.quality) if args.quality else args._defaults
    if getattr(args, "look", None):  # the look's values first; the options given override them
        from .looks import apply_look

        base = apply_look(base, args.look)
    given = given_options(args)
    if args.format is not None:
        format_size(args.format)  # an unknown format: one line naming the choices
    if args.size:  # an explicit size wins; with --format, it must have its shape
        width, height = parse_size(args.size)
        if args.format is not None:
            check_shape(width, height, args.format, "--size")
    elif args.format is not None:  # the format's size at the quality
        width, height = format_size(args.format, args.quality or "standard")
    else:
        width, height = base.width, base.height
    values = {}
    for row in SETTINGS:
        if row.flag is not None:
            values[row.name] = getattr(args, row.name) if row.name in given else getattr(base, row.name)
    return RenderSettings(width=width, height=height, **values)


def _image_args(args: argparse.Namespace) -> dict:
    from .errors import ParameterError

    images = args.image or []
    per_stem = [i for i in images if "=" in i and i.split("=", 1)[0].strip().isidentifier()]
    if per_stem and len(per_stem) != len(images):
        raise ParameterError("give either one --image PATH or --image STEM=PATH for each stem, not both kinds")
    if len(images) > 1 and not per_stem:
        raise ParameterError("--image given more than once; with --stems, use --image STEM=PATH")
    if per_stem:
        image = {}
        for item in per_stem:
            stem, path = item.split("=", 1)
            if stem.strip().lower() in image:
                raise ParameterError(f"--image for stem {stem.strip()!r} given twice")
            image[stem.strip().lower()] = path
    else:
        image = images[0] if images else None
    if args.model and image is not None and not (isinstance(image, str) and image.strip().lower() in ("none", "auto")):
        raise ParameterError("give --image or --model, not both")
    return dict(image=image, model=args.model, cache=not args.no_cache, cues=args.cues)


# Each command returns what it wrote, as lines for the log: main() says them once it treats the run as done, from
# which moment a signal is ignored (a run whose output is in place exits 0).

def _cmd_render(args: argparse.Namespace, cancel: threading.Event) -> list[str]:
    from .pipeline import render

    result = render(args.song, args.output, settings_from_args(args), overwrite=args.overwrite, progress=_bars(args),
                    cancel=cancel, ray=args.ray, segments=args.segments, **_image_args(args))
    return [_wrote(result)]


def _wrote(result) -> str:
    return (f"wrote {result.path}: {result.frames} frames ({result.duration:.2f} s) in {result.seconds:.1f} s, "
            f"{result.frames / max(result.seconds, 1e-9):.1f} frames/s")


def _cmd_demo(args: argparse.Namespace, cancel: threading.Event) -> list[str]:
    from .demo import demo_cover, demo_song
    from .pipeline import render

    opts = _image_args(args)
    if isinstance(opts["image"], str) and opts["image"].strip().lower() == "demo":
        import io

        from PIL import Image

        from .image import ImageSource

        png = io.BytesIO()
        Image.fromarray(demo_cover()).save(png, format="PNG")
        opts["image"] = ImageSource(png.getvalue(), "the demo cover (neuromv.demo.demo_cover)")
    result = render(demo_song(), args.output, settings_from_args(args), overwrite=args.overwrite, progress=_bars(args),
                    cancel=cancel, **opts)
    return [_wrote(result)]


def _cmd_batch(args: argparse.Namespace, cancel: threading.Event) -> list[str]:
    from .batch import run_batch
    from .errors import ParameterError

    opts = _image_args(args)
    if opts.pop("cues") is not None:
        raise ParameterError("--cues is one song's; a batch analyses each song (or give 'neuromv render' the cues)")
    explicit = {k: getattr(args, k) for k in given_options(args)}  # a manifest row's look does not override these
    result = run_batch(args.inputs, args.output, settings_from_args(args), ray=args.ray, workers=args.workers,
                       worker_cpus=args.worker_cpus, overwrite=args.overwrite, progress=_bars(args), cancel=cancel,
                       explicit=explicit, **opts)
    if not result.succeeded:
        raise NeuroMVError(result.summary())
    return [result.summary()]


def _cmd_looks(args: argparse.Namespace, cancel: threading.Event) -> list[str]:
    from .looks import LOOK_SETTINGS, LOOKS, apply_look, look_toml, read_look, save_look
    from .settings import RenderSettings

    if (args.action or "list") == "list":
        width = max(map(len, LOOKS))
        for name, values in LOOKS.items():
            text = " ".join(f"{k}={v}" for k, v in values.items()) or "the defaults"
            print(f"{name:<{width}}  {text}")
        return []
    if args.action == "show":
        name, values = read_look(args.look)
        print(look_toml(values, name), end="")
        return []
    base = apply_look(RenderSettings(), args.look) if args.look else RenderSettings()
    given = {k: getattr(args, k) for k in given_options(args) if k in LOOK_SETTINGS}
    out = save_look(RenderSettings(**{**base.to_dict(), **given}), args.output, name=args.name,
                    overwrite=args.overwrite, inputs=(args.look,) if args.look else ())
    return [f"wrote {out}"]


def _cmd_fit(args: argparse.Namespace, cancel: threading.Event) -> list[str]:
    from .image import load_image
    from .pipeline import fit_for
    from .reference import check_model_path, save_model
    from .settings import RenderSettings, parse_size

    width, height = parse_size(args.size)
    settings = RenderSettings(width=width, height=height, seed=args.seed, fit=args.fit, background=args.background,
                              fit_quality=args.fit_quality, fit_steps=args.steps)
    out = check_model_path(args.output, inputs=(args.image,), overwrite=args.overwrite)  # before the slow fit
    pixels = load_image(args.image, background=settings.background)
    log.info("image: %s (%dx%d)", args.image, pixels.shape[1], pixels.shape[0])
    cppn = fit_for(pixels, settings, cache=False, progress=_bars(args), cancel=cancel)
    save_model(cppn, out, overwrite=args.overwrite,
               info={"aspect": width / height, "fit": settings.fit, "background": settings.background,
                     "quality": settings.fit_quality, "steps": settings.fit_steps,
                     "image": os.path.basename(args.image)})
    return [f"wrote {out}"]


def _cmd_analyze(args: argparse.Namespace, cancel: threading.Event) -> list[str]:
    from ._files import check_output
    from .analysis import analyze
    from .audio import AudioFile
    from .cues import save_cues

    check_output(args.output, inputs=(args.song,), overwrite=args.overwrite, kind="cues file")  # before the work
    cues = analyze(AudioFile(args.song), progress=_bars(args), cancel=cancel)
    save_cues(cues, args.output, overwrite=args.overwrite, inputs=(args.song,))
    sections = " ".join(s.label for s in cues.sections)
    return [f"wrote {args.output}: {cues.tempo:.1f} BPM, {len(cues.beats)} beats, {len(cues.downbeats)} bars, "
            f"sections {sections or 'none'}, {len(cues.drops)} drop(s), {len(cues.silence)} silent span(s)"]


def _cmd_separate(args: argparse.Namespace, cancel: threading.Event) -> list[str]:
    from .pipeline import separate_song
    from .settings import RenderSettings

    RenderSettings(device=args.device)  # validates the device name
    paths = separate_song(args.song, args.output, args.separator, overwrite=args.overwrite, device=args.device,
                          progress=_bars(args), cancel=cancel)
    return [f"wrote {p}" for p in paths.values()]


def _cmd_sync(args: argparse.Namespace, cancel: threading.Event) -> list[str]:
    import json

    from .sync import sync_video

    report = sync_video(args.video, args.song, progress=_bars(args), cancel=cancel)
    print(json.dumps(report.to_dict()) if args.json else report)
    return []


def _cmd_serve(args: argparse.Namespace, cancel: threading.Event) -> None:
    import importlib.util

    from .errors import ParameterError

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ParameterError(f"neuromv serve needs the 'serve' extra: pip install 'neuromv[serve]' "
                             f"({', '.join(missing)} missing)")
    from .serve import serve
    for flag, v in (("--max-upload", args.max_upload), ("--max-image", args.max_image),
                    ("--max-storage", args.max_storage)):
        if not 1 <= v <= 1 << 20:
            raise ParameterError(f"{flag} must be from 1 to 1048576 MB, not {v}")
    if not 1 <= args.jobs <= 64:
        raise ParameterError(f"--jobs must be from 1 to 64, not {args.jobs}")
    serve(args.host, args.port, max_upload=args.max_upload * 2**20, max_image=args.max_image * 2**20,
          max_storage=args.max_storage * 2**20, jobs=args.jobs, allow_hosts=args.allow_host,
          max_connections=args.max_connections,
          on_listen=lambda url: print(f"neuromv: live preview at {url} (Ctrl-C to stop)", file=sys.stderr))


def _bars(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal; none when quiet or when stderr is a file or a pipe (a log stays readable)."""
    return not args.quiet and sys.stderr.isatty()


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install_signal_handlers(cancel: threading.Event, done: threading.Event) -> dict:
    """First Ctrl-C / SIGTERM: ask the work to stop at its next safe point (between frames, fit steps, model
    layers), which deletes the partial output. A second one: stop at once (KeyboardInterrupt; the writer still
    deletes its temporary file). Once ``done`` is set (the work is over, its output in place), signals are ignored.

    Raising from the handler at once would be unsafe: the exception can land inside a native callback (numba's
    JIT in librosa) that swallows it.

    Returns the handlers it replaced (empty when not on the main thread, where handlers cannot be set).
    """

    def handler(signum, frame):
        if done.is_set():
            return
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = {}
    for sig in _SIGNALS:
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (main() called from a worker thread)
            pass
    return previous


def _end_signal_handling(previous: dict, program: bool) -> None:
    """After the work: as the program, ignore SIGINT and SIGTERM until the process ends (Python puts the default
    handlers back while it shuts down, so a late signal would kill a run that has finished); called as a function,
    put the caller's handlers back."""
    for sig, old in previous.items():
        signal.signal(sig, signal.SIG_IGN if program else old)


def _setup_logging(quiet: bool, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("neuromv: %(message)s"))
    root = logging.getLogger("neuromv")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    root.propagate = False


_INTERRUPTED = "neuromv: interrupted; no output written"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuromv`` command. Returns the exit code: 0, 1 (an error, one line on stderr) or 130
    (interrupted by Ctrl-C or SIGTERM, nothing written).

    The signal handlers are installed first, before the heavy imports, so a Ctrl-C during start-up is a quiet exit
    130. With ``argv`` None (run as the program), SIGINT and SIGTERM are ignored once the work is over: a signal
    arriving after the output is in place cannot turn success into failure.
    """
    cancel, done = threading.Event(), threading.Event()
    previous = _install_signal_handlers(cancel, done)
    try:
        return _main(argv, cancel, done)
    except KeyboardInterrupt:  # a second signal outside the work (start-up, argument parsing)
        print(_INTERRUPTED, file=sys.stderr)
        return 130
    finally:
        done.set()
        _end_signal_handling(previous, program=argv is None)


def _main(argv: Sequence[str] | None, cancel: threading.Event, done: threading.Event) -> int:
    from .progress import check_cancel

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    _setup_logging(args.quiet, args.verbose)
    try:
        check_cancel(cancel)  # signalled during start-up
        wrote = args.func(args, cancel)
    except Interrupted:
        print(_INTERRUPTED, file=sys.stderr)
        return 130
    except NeuroMVError as e:
        print(f"neuromv: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_INTERRUPTED, file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, with the traceback behind -v
        if args.verbose:
            raise
        print(f"neuromv: error: unexpected {type(e).__name__}: {e} (run with -v for details)", file=sys.stderr)
        return 1
    done.set()  # the output is in place: a signal from now on is ignored
    for line in wrote or ():
        log.info("%s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
