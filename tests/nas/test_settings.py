"""Settings declared once: their options, defaults and bounds, in library and flag terms."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from nas.cli import build_parser, main
from nas.common import UsageError
from nas.protocol import PROXY_DEFAULTS
from nas.search_config import SearchConfig
from nas.settings import (ProxySettings, SettingError, Settings, add_options, from_args, setting,
                          usage_errors)


@dataclasses.dataclass(frozen=True)
class _Example(Settings):
    size: int = setting(4, "images per batch (default %(default)s)", low=2, group="g")
    rate: float = setting(0.5, "a fraction", low=0, high=1, high_open=True, metavar="F")
    kind: str = setting("a", "which one", choices=("a", "b"))
    name: str = setting(None, "a name", flags=("--called",))
    loud: bool = setting(False, "say more")
    hidden: int = setting(7, cli=False)


def _parser(**options) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="x")
    add_options(parser, _Example, **options)
    return parser


def test_options_are_generated_from_the_fields_and_read_back():
    parser = _parser()
    text = parser.format_help()
    assert "--size SIZE" in text and "images per batch (default 4)" in text
    assert "--rate F" in text and "--kind {a,b}" in text and "--called NAME" in text
    assert "--hidden" not in text and "\ng:\n" in text  # its group's section
    args = parser.parse_args(["--size", "8", "--loud", "--called", "n"])
    assert from_args(_Example, args) == _Example(size=8, loud=True, name="n")
    assert from_args(_Example, parser.parse_args([]), hidden=9) == _Example(hidden=9)
    # A prefix and a command's own default: None means "not given", the field's default.
    prefixed = _parser(prefix="ex-", only=("size",), defaults={"size": None})
    args = prefixed.parse_args([])
    assert args.ex_size is None and from_args(_Example, args, prefix="ex-").size == 4
    assert from_args(_Example, prefixed.parse_args(["--ex-size", "3"]), prefix="ex-").size == 3


@pytest.mark.parametrize("values, library, flags", [
    ({"size": 1}, "size 1 must be at least 2", "--size 1 must be at least 2"),
    ({"rate": 1.0}, "rate 1.0 must be in [0, 1)", "--rate 1.0 must be in [0, 1)"),
    ({"rate": float("nan")}, "rate nan must be in [0, 1)", "--rate nan"),
    ({"kind": "c"}, "kind 'c' must be one of a, b", "--kind 'c' must be one of a, b"),
    ({"size": True}, "size True must be a number", "--size True"),
])
def test_bounds_are_checked_once_and_named_as_the_caller_knows_them(values, library, flags):
    with pytest.raises(SettingError) as error:
        _Example(**values)
    assert str(error.value) == library
    with pytest.raises(UsageError) as again, usage_errors(_Example):
        _Example(**values)
    assert flags in str(again.value)


def test_proxy_protocol_has_one_source():
    assert dataclasses.asdict(ProxySettings()) == PROXY_DEFAULTS == {
        "resolution": 32, "subset": 10000, "epochs": 3, "batch_size": 128, "val_size": 5000}
    config = SearchConfig(target=400e6, proxy_epochs=2, proxy_val_size=400)
    assert config.proxy == ProxySettings(epochs=2, val_size=400)
    with pytest.raises(SettingError, match=r"^proxy_epochs 0 must be at least 1$"):
        SearchConfig(target=400e6, proxy_epochs=0)
    argv = ["search", "--target-flops", "400M"]
    parsed = build_parser(argv).parse_args(argv)
    assert (parsed.proxy_resolution, parsed.proxy_subset, parsed.proxy_epochs,
            parsed.proxy_val_size) == (32, 10000, 3, 5000)


@pytest.mark.parametrize("flags, message", [
    (["--proxy-epochs", "0"], "--proxy-epochs 0 must be at least 1"),
    (["--cost-window", "1"], "--cost-window 1.0 must be in [0, 1)"),
    (["--alpha", "11"], "--alpha 11.0 must be in [-10, 10]"),
    (["--sampler", "evolution", "--population-size", "4", "--tournament-size", "5"],
     "--tournament-size must be between 1 and --population-size (4)"),
    (["--study", "a/b"], "--study 'a/b' may use letters"),
])
def test_search_flags_out_of_bounds_are_one_line_naming_the_flag(tmp_path, capsys, flags,
                                                                  message):
    assert main(["search", "--target-flops", "400M", "--evaluator", "naswot", "--runs",
                 str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not any(tmp_path.iterdir())  # refused before anything was made


def test_settings_and_search_config_load_without_torch():
    # nas search checks its flags before the seconds torch takes to load.
    code = ("import sys, nas.settings, nas.search_config, nas.commands.search; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False"]
