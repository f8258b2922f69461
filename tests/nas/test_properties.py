"""Properties of the two files a user writes by hand, through the command line that reads
them (``nas show``, called in-process): a valid genome or space file round-trips exactly;
any other file, whatever it holds, gives exit code 2 and exactly one line, never a
traceback. Hypothesis draws the files (derandomized: the same examples every run)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.cli import main
from space.blocks import round_channels
from space import Stage
from space.genome import ACTIVATIONS

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
_FOLDER = tempfile.TemporaryDirectory(prefix="nas-properties-")  # removed at exit
FOLDER = Path(_FOLDER.name)

# -- valid files -----------------------------------------------------------------------------

STAGE = st.fixed_dictionaries({
    "kernel_size": st.sampled_from([3, 5, 7]),
    "expand_ratio": st.sampled_from([1, 2.5, 3, 6]),
    "se_ratio": st.sampled_from([0, 0.25, 0.5]),
    "num_layers": st.integers(1, 4),
    "out_channels": st.integers(1, 64),
    "stride": st.sampled_from([1, 2]),
})
GENOME = st.fixed_dictionaries({
    "version": st.just(1),
    "name": st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    "stem_channels": st.integers(1, 64),
    "stages": st.lists(STAGE, min_size=1, max_size=4),
    "head_channels": st.integers(1, 128),
    "dropout": st.floats(0, 0.99),
    "drop_connect_rate": st.floats(0, 0.99),
    "resolution": st.integers(8, 96),
    "resolution_multiplier": st.floats(0.1, 4),
    "activation": st.sampled_from(ACTIVATIONS),
})


def _subset(values: list) -> st.SearchStrategy:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True)


CHOICES = {"kernel_size": [3, 5, 7], "expand_ratio": [1, 3, 4.5, 6], "se_ratio": [0, 0.25],
           "layers_delta": [-1, 0, 1], "width_multiplier": [0.5, 0.75, 1.0, 1.25]}
SPACE_STAGE = st.fixed_dictionaries({
    "out_channels": st.integers(8, 64),
    "num_layers": st.integers(1, 3),
    "stride": st.sampled_from([1, 2]),
    **{key: _subset(values) for key, values in CHOICES.items()},
})
SPACE = st.fixed_dictionaries({
    "version": st.just(1),
    "stem_channels": st.integers(8, 64),
    "head_channels": st.integers(8, 256),
    "activation": st.sampled_from(ACTIVATIONS),
    "resolution": st.integers(32, 256),
    "stages": st.lists(SPACE_STAGE, min_size=1, max_size=4),
})

# A stage the genome's rules accept, to check one value of one field at a time.
PLAIN_STAGE = {"kernel_size": 3, "expand_ratio": 1, "se_ratio": 0, "num_layers": 1,
               "out_channels": 8}

# -- anything JSON can hold, for the hostile mutations ---------------------------------------

# Stands for an integer of 5,000 digits in the text (json.dumps refuses to write one).
HUGE_INTEGER = "<integer of 5000 digits>"

SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.integers(10**30, 10**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10), st.sampled_from(["/dev/zero", "7" * 5000, HUGE_INTEGER]))
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _file(name: str, text: str) -> str:
    text = text.replace(json.dumps(HUGE_INTEGER), "7" * 5000)
    path = FOLDER / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return str(path)


def _refused_in_one_line(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas show: error: "), err


def _toml(space: dict[str, Any]) -> str:
    def value(item: Any) -> str:
        if isinstance(item, list):
            return "[" + ", ".join(value(x) for x in item) + "]"
        return json.dumps(item)  # numbers and strings are written alike in TOML

    lines = [f"{key} = {value(item)}" for key, item in space.items() if key != "stages"]
    for stage in space["stages"]:
        lines += ["", "[[stages]]"] + [f"{key} = {value(item)}" for key, item in stage.items()]
    return "\n".join(lines) + "\n"


# -- genomes ------------------------------------------------------------------------------------


@SETTINGS
@given(GENOME)
def test_a_valid_genome_file_round_trips_exactly(genome):
    code, out, err = _run(["show", "--genome", _file("genome.json", json.dumps(genome)),
                           "--json"])
    assert code == 0, err
    assert json.loads(out)["genome"] == genome


@st.composite
def _mutated_genome(draw) -> str:
    genome = draw(GENOME)
    target = draw(st.sampled_from([genome] + genome["stages"]))
    action = draw(st.sampled_from(["set", "delete", "add", "text"]))
    if action == "set":
        target[draw(st.sampled_from(sorted(target)))] = draw(VALUE)
    elif action == "delete":
        del target[draw(st.sampled_from(sorted(target)))]
    elif action == "add":
        target[draw(st.text(min_size=1, max_size=8))] = draw(VALUE)
    text = json.dumps(genome)
    if action == "text":  # cut or spliced text, not JSON any more (or by chance still)
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=8))
    return text


@SETTINGS
@given(_mutated_genome())
def test_any_other_genome_file_is_one_line_and_exit_2(text):
    code, out, err = _run(["show", "--genome", _file("mutated.json", text), "--json"])
    if code == 0:  # the mutation kept a valid genome: what was written comes back
        written, shown = json.loads(text), json.loads(out)["genome"]
        assert all(shown[key] == value for key, value in written.items()
                   if key != "stages")
        assert shown["stages"] == written["stages"]
    else:
        _refused_in_one_line(code, err)


# -- spaces -------------------------------------------------------------------------------------


def _resolved(stage: dict[str, Any]) -> dict[str, Any]:
    """The choices ``nas show --space`` reports for a stage of the file."""
    return {"stride": stage["stride"],
            "kernel_size": sorted(set(stage["kernel_size"])),
            "expand_ratio": sorted(set(stage["expand_ratio"])),
            "se_ratio": sorted(set(stage["se_ratio"])),
            "num_layers": sorted({max(1, stage["num_layers"] + d)
                                  for d in stage["layers_delta"]}),
            "out_channels": sorted({round_channels(stage["out_channels"] * w)
                                    for w in stage["width_multiplier"]})}


@SETTINGS
@given(SPACE, st.booleans())
def test_a_valid_space_file_round_trips_exactly(space, as_toml):
    path = (_file("space.toml", _toml(space)) if as_toml
            else _file("space.json", json.dumps(space)))
    code, out, err = _run(["show", "--space", path, "--json"])
    assert code == 0, err
    shown = json.loads(out)
    for row, stage in zip(shown["stages"], space["stages"], strict=True):
        assert {key: row[key] for key in _resolved(stage)} == _resolved(stage)
    assert shown["size"] == math.prod(row["size"] for row in shown["stages"])


@st.composite
def _mutated_space(draw) -> tuple[str, bool]:
    space = draw(SPACE)
    stage = draw(st.sampled_from(space["stages"]))
    action = draw(st.sampled_from(["between", "append", "set"]))
    if action == "set":
        key = draw(st.sampled_from(sorted(stage)))
        stage[key] = draw(VALUE)
    elif action == "append":  # anything beside good values
        key = draw(st.sampled_from(sorted(CHOICES)))
        stage[key] = stage[key] + [draw(SCALAR)]
    else:  # a kernel between the smallest and largest good ones, where a check of the
        # extremes alone misses an even one (parity is the one rule that is not monotone)
        stage["kernel_size"] = [3, draw(st.integers(4, 6)), 7]
    return json.dumps(space), draw(st.booleans())


@SETTINGS
@given(_mutated_space())
def test_any_other_space_file_is_one_line_and_exit_2(mutated):
    text, as_toml = mutated
    space = json.loads(text)
    if as_toml:  # JSON's NaN or objects nested in a list are not TOML: refused too
        text = _toml(space)
    path = _file("mutated.toml" if as_toml else "mutated.json", text)
    code, out, err = _run(["show", "--space", path, "--json"])
    if code == 0:  # the mutation kept a valid space: each of its values makes a valid stage
        shown = json.loads(out)
        for row, stage in zip(shown["stages"], space["stages"], strict=True):
            assert {key: row[key] for key in _resolved(stage)} == _resolved(stage)
            for field in ("kernel_size", "expand_ratio", "se_ratio", "num_layers",
                          "out_channels"):
                for value in row[field]:
                    Stage(**{**PLAIN_STAGE, field: value}, stride=row["stride"])
    else:
        _refused_in_one_line(code, err)
