"""RenderSettings: every range comes from neuromv.limits, every refusal is a one-line ParameterError naming the
setting, the range and the value; any JSON value gives valid settings or a ParameterError, never anything else."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from neuromv import limits
from neuromv.errors import ParameterError
from neuromv.settings import RenderSettings


@pytest.mark.parametrize("field, bad, words", [
    ("fps", 0.999, "fps must be a number from 1 to 240"),
    ("fps", 0.001, "not 0.001"),
    ("fps", 241, "fps must be a number from 1 to 240"),
    ("fps", float("nan"), "not nan"),
    ("fps", 10**400, "fps must be a number"),  # beyond float's range: still our error, not OverflowError
    ("fps", "30", "not '30'"),
    ("n_mels", 0, "n_mels must be an integer from 1 to 256"),
    ("n_mels", 257, "n_mels must be an integer from 1 to 256"),
    ("hidden", 1025, "hidden must be an integer from 1 to 1024, not 1025"),
    ("hidden", 32.0, "hidden must be an integer"),
    ("seed", 2**63, "seed must be an integer from 0 to"),
    ("seed", True, "seed must be an integer"),
    ("smooth", -0.1, "smooth must be a number from 0 to 10 seconds"),
    ("zoom", 0, "zoom must be a number above 0 and at most 1000"),
    ("pan_x", 1e4, "pan-x must be a number from -1000 to 1000"),
    ("hue", 400, "hue must be a number from -360 to 360 degrees"),
    ("crf", 52, "crf must be an integer from 0 to 51"),
    ("start", 1e308, "start must be a number from 0 to 86400 seconds"),
    ("duration", 0, "duration must be a number above 0 and at most 86400 seconds"),
    ("fit_steps", 0, "fit steps must be an integer from 1 to 100000"),
    ("codec", "x" * 100, "codec must be an FFmpeg encoder name"),
    ("device", ["cpu"], "device must be"),
    ("separator", ["spleeter"], "unknown separator"),
    ("layout", {"a": 1}, "layout must be one of"),
    ("labels", "yes", "labels must be true or false"),
    ("background", 10**5000, "background must be a colour"),
    ("background", [1, 2, 3], "background must be a colour"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else type(v).__name__)
def test_each_range_is_refused_with_the_setting_the_range_and_the_value(field, bad, words):
    with pytest.raises(ParameterError) as e:
        RenderSettings(**{field: bad})
    message = str(e.value)
    assert words in message and "\n" not in message and len(message) < 200, message


def test_the_edges_of_each_range_are_accepted():
    RenderSettings(fps=limits.MIN_FPS, n_mels=limits.MAX_MELS, hidden=limits.MAX_HIDDEN, seed=limits.MAX_SEED,
                   width=limits.MAX_SIDE, height=1, start=limits.MAX_SECONDS, duration=limits.MAX_SECONDS)
    RenderSettings(fps=limits.MAX_FPS, n_mels=limits.max_mels(limits.MAX_FPS, 22050))


def test_n_mels_is_bounded_by_the_bins_of_the_fft_at_the_frame_rate():
    assert limits.max_mels(30, 22050) == 256  # the default rate takes every band
    top = limits.max_mels(240, 22050)
    assert 40 < top < 93  # fewer than the FFT's 93 bins: the narrowest filters need a bin each
    RenderSettings(fps=240, n_mels=top)
    with pytest.raises(ParameterError, match=f"n_mels must be at most {top} at 240 fps"):
        RenderSettings(fps=240, n_mels=top + 1)
    assert [limits.max_mels(f, 22050) for f in (1, 30, 60, 120, 240)] == sorted(
        [limits.max_mels(f, 22050) for f in (1, 30, 60, 120, 240)], reverse=True)


def test_from_dict_refuses_what_is_not_an_object_or_unknown_names():
    for data in ([], "fps", 3, None):
        with pytest.raises(ParameterError, match="must be a JSON object"):
            RenderSettings.from_dict(data)
    with pytest.raises(ParameterError, match="unknown setting.*nope"):
        RenderSettings.from_dict({"nope": 1, "fps": 30})
    s = RenderSettings(fps=24, hidden=64, stems="all", separator="hpss")
    assert RenderSettings.from_dict(s.to_dict()) == s


NAMES = [f.name for f in fields(RenderSettings)]
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-10**30, 10**30).map(lambda i: i * 10**300)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
                | st.sampled_from(["auto", "cpu", "cuda:0", "black", "#102030", "1,2,3", "cover", "grid", "all",
                                   "vocals", "hpss", "demucs", "libx264", "medium", ""]))
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
# mostly real names (so the checks past the first one run), sometimes unknown ones
settings_dicts = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=10), json_values, max_size=8)
plausible = st.fixed_dictionaries({}, optional={
    "fps": st.floats(0, 300) | st.integers(-5, 300), "n_mels": st.integers(-5, 300),
    "width": st.integers(-5, 9000), "height": st.integers(-5, 9000), "hidden": st.integers(-5, 1100),
    "start": st.floats(allow_nan=True), "duration": st.none() | st.floats(allow_nan=True),
    "stems": st.none() | st.sampled_from(["all", "vocals", "vocals,vocals", "drums,bass", "x", " "]),
    "separator": st.sampled_from(["spleeter", "hpss", "demucs", "nope"]),
})


@hyp_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(settings_dicts, plausible, json_values))
def test_any_json_value_gives_valid_settings_or_a_parameter_error(data):
    try:
        s = RenderSettings.from_dict(data)
    except ParameterError as e:
        assert "\n" not in str(e) and len(str(e)) < 400
        return
    assert isinstance(s, RenderSettings)
    assert limits.MIN_FPS <= s.fps <= limits.MAX_FPS and math.isfinite(s.fps)
    assert 1 <= s.n_mels <= limits.max_mels(s.fps, 22050)
    assert RenderSettings.from_dict(s.to_dict()) == s


# -- the settings table ------------------------------------------------------------------------------------------------
def test_settings_sit_on_the_ground_floor():
    """``import neuromv.settings`` and building settings import no other NeuroMV module than errors and limits, and
    no torch or numpy: every layer may import the settings, the settings import none of them."""
    import subprocess
    import sys

    code = ("import sys, neuromv.settings as s; s.RenderSettings(stems='all', background='#102030'); "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'; "
            "print(sorted(m for m in sys.modules if m.startswith('neuromv')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["['neuromv',", "'neuromv.errors',", "'neuromv.limits',", "'neuromv.settings']"]


def test_the_table_is_the_dataclass():
    """One row per field, in its order, with the field's default; every row is shown in a known group and has a
    help text; choice lists are the module's constants."""
    from neuromv import settings as S

    assert [r.name for r in S.SETTINGS] == NAMES
    defaults = RenderSettings().to_dict()
    assert {r.name: r.default for r in S.SETTINGS} == defaults
    for r in S.SETTINGS:
        assert r.group in S.GROUPS and r.help and r.doc, r.name
        assert r.flag is None or r.flag == "--" + r.name.replace("_", "-"), r.name
        assert r.name in RenderSettings.__doc__
    rows = {r.name: r for r in S.SETTINGS}
    assert rows["preset"].choices == S.X264_PRESETS and rows["precision"].choices == S.PRECISIONS
    assert rows["fit"].choices == S.FIT_MODES and rows["layout"].choices == S.LAYOUTS
    assert rows["separator"].choices == tuple(S.SEPARATOR_STEMS)
    assert rows["hidden"].hi == limits.MAX_HIDDEN and rows["fps"].lo == limits.MIN_FPS


def test_choice_settings_keep_their_messages():
    for field, bad, message in [
        ("preset", "warp", "preset must be one of ultrafast, cppn, superfast, veryfast, faster, fast, medium, slow, "
                           "slower, veryslow; not 'warp'"),
        ("precision", "int8", "precision must be one of auto, float32, int16, not 'int8'"),
        ("fit", "stretch", "fit must be 'cover' or 'contain', not 'stretch'"),
        ("layout", "stack", "layout must be one of auto, side-by-side, grid, blend; not 'stack'"),
        ("separator", "x", "unknown separator 'x'; choose one of spleeter, hpss, demucs"),
        ("device", "tpu", "device must be 'auto', 'cpu' or 'cuda', not 'tpu'"),
        ("width", 0, "size must be from 1x1 to"),
    ]:
        with pytest.raises(ParameterError) as e:
            RenderSettings(**{field: bad})
        assert message in str(e.value), str(e.value)


def test_the_pages_defaults_and_choices_are_the_tables():
    from neuromv import settings as S
    from neuromv.serve import page_config

    config = page_config()
    assert config["defaults"] == {r.name: r.default for r in S.SETTINGS} == RenderSettings().to_dict()
    rows = {r.name: r for r in S.SETTINGS}
    assert config["choices"]["fit"] == list(rows["fit"].choices)
    assert config["choices"]["layout"] == list(rows["layout"].choices)
    assert config["choices"]["separator"] == {k: list(v) for k, v in S.SEPARATOR_STEMS.items()}


def test_separator_stems_are_the_backends():
    from neuromv import separate, settings as S

    assert dict(separate.BACKENDS) == S.SEPARATOR_STEMS
