"""Settings the library and the command line share: each declared once, as a dataclass
field whose metadata holds its help and bounds.

:func:`setting` declares a field; :func:`add_options` generates its argparse option
(flag, type, default, help, choices) and :func:`from_args` builds the dataclass back
from the parsed arguments. A dataclass that derives from :class:`Settings` checks every
field against its bounds once, when it is made, whether a command or a library caller
makes it; cross-field rules go in its ``check()``.

Errors are raised in library terms: a :class:`SettingError` names fields
(``proxy_epochs 0 must be at least 1``); a command renders the same error with its
flags (``--proxy-epochs 0 ...``) through :func:`usage_errors`.

Importable without torch or Optuna, so that usage errors come before either loads.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import typing
from typing import Any, Iterator, Mapping, Optional, Sequence

from .common import UsageError

__all__ = ["Settings", "SettingError", "setting", "add_options", "from_args", "flag_names",
           "usage_errors", "ProxySettings"]

_MISSING = dataclasses.MISSING


class SettingError(UsageError):
    """A setting out of its bounds. ``template`` names settings as ``{field}``: ``str()``
    shows the field names, :meth:`render` the flags a command gave them. A
    :class:`~nas.common.UsageError`, so that callers that catch those keep working."""

    def __init__(self, template: str, **values: Any) -> None:
        self.template = template
        self.values = values
        super().__init__(self.render())

    def render(self, names: Optional[Mapping[str, str]] = None) -> str:
        class _Names(dict):
            def __missing__(self, key: str) -> str:
                return (names or {}).get(key, key)

        return self.template.format_map(_Names(self.values))


def setting(default: Any = _MISSING, help: str = "", *, low: Any = None, high: Any = None,
            low_open: bool = False, high_open: bool = False,
            choices: Optional[Sequence[Any]] = None, cli_choices: bool = True,
            noun: Optional[str] = None,
            flags: Optional[Sequence[str]] = None, metavar: Optional[str] = None,
            parse: Any = None, group: Optional[str] = None, cli: bool = True) -> Any:
    """A dataclass field with what a command line and a check need.

    ``low``/``high`` bound the value (inclusive unless ``low_open``/``high_open``);
    ``choices`` lists its values (given to argparse too unless ``cli_choices`` is false,
    then only checked, and a value outside them is an "unknown ``noun``" where given).
    ``flags`` replace the option strings made from the name,
    ``parse`` the argparse ``type`` taken from the annotation; ``group`` is the title of
    the help section; ``cli=False`` keeps a field off the command line."""
    metadata = {"help": help, "low": low, "high": high, "low_open": low_open,
                "high_open": high_open, "choices": None if choices is None else tuple(choices),
                "cli_choices": cli_choices, "noun": noun,
                "flags": None if flags is None else tuple(flags),
                "metavar": metavar, "parse": parse, "group": group, "cli": cli}
    return dataclasses.field(default=default, metadata=metadata)


def _bounds_error(name: str, value: Any, meta: Mapping[str, Any]) -> Optional[SettingError]:
    """The error of ``value`` against its field's bounds and choices, or None."""
    low, high = meta.get("low"), meta.get("high")
    choices = meta.get("choices")
    shown = repr(value) if isinstance(value, str) else value
    if choices is not None and value not in choices and meta.get("noun"):
        return SettingError(f"unknown {meta['noun']} {{shown}}; choose one of "
                            f"{', '.join(map(str, choices))}", shown=shown)
    if choices is not None and value not in choices:
        return SettingError(f"{{{name}}} {{shown}} must be one of {', '.join(map(str, choices))}",
                            shown=shown)
    if low is None and high is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return SettingError(f"{{{name}}} {{shown}} must be a number", shown=shown)
    # Written so that NaN fails every bound.
    ok = ((low is None or (value > low if meta.get("low_open") else value >= low))
          and (high is None or (value < high if meta.get("high_open") else value <= high)))
    if ok:
        return None
    if high is None:
        rule = ("must be positive" if low == 0 and meta.get("low_open")
                else f"must be at least {low}")
    elif low is None:
        rule = f"must be at most {high}"
    else:
        rule = (f"must be in {'(' if meta.get('low_open') else '['}{low}, {high}"
                f"{')' if meta.get('high_open') else ']'}")
    return SettingError(f"{{{name}}} {{shown}} {rule}", shown=shown)


class Settings:
    """Base of a settings dataclass: every field is checked against its bounds when the
    object is made, then the cross-field rules of :meth:`check`."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.default is None:
                continue  # optional, and not given
            error = _bounds_error(field.name, value, field.metadata)
            if error is not None:
                raise error
        self.check()

    def check(self) -> None:
        """Rules between fields; raise :class:`SettingError`."""


def _cli_fields(cls: type, only: Optional[Sequence[str]], skip: Sequence[str]):
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)
            and (only is None or f.name in only) and f.name not in skip]


def _flags(field: dataclasses.Field, prefix: str, flags: Optional[Mapping[str, str]]) -> tuple:
    if flags and field.name in flags:
        return (flags[field.name],)
    return field.metadata.get("flags") or (f"--{prefix}{field.name.replace('_', '-')}",)


def _dest(field: dataclasses.Field, prefix: str) -> str:
    return prefix.replace("-", "_") + field.name


def flag_names(cls: type, *, prefix: str = "",
               flags: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """Field name -> the flag :func:`add_options` gives it (the first, if several)."""
    return {field.name: _flags(field, prefix, flags)[0] for field in dataclasses.fields(cls)}


def add_options(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "",
                only: Optional[Sequence[str]] = None, skip: Sequence[str] = (),
                flags: Optional[Mapping[str, str]] = None,
                defaults: Optional[Mapping[str, Any]] = None,
                helps: Optional[Mapping[str, str]] = None,
                groups: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Add an option for each command-line field of the dataclass ``cls``.

    ``prefix`` goes before every generated flag and destination (``proxy-`` makes
    ``--proxy-epochs`` into ``args.proxy_epochs``); ``only``/``skip`` choose fields;
    ``flags`` renames options; ``defaults`` replaces a field's default on this command
    line only (None: "not given", so :func:`from_args` leaves the dataclass default),
    ``helps`` its help text.
    Options land in the argument group their field names, made on first use or taken
    from ``groups``; the groups are returned, for the command's own options."""
    groups = {} if groups is None else groups
    hints = typing.get_type_hints(cls)
    for field in _cli_fields(cls, only, skip):
        meta = field.metadata
        title = meta.get("group")
        target = parser if title is None else groups.setdefault(
            title, parser.add_argument_group(title))
        default = (defaults[field.name] if defaults and field.name in defaults
                   else None if field.default is _MISSING else field.default)
        options: dict[str, Any] = {"dest": _dest(field, prefix),
                                   "help": (helps or {}).get(field.name, meta.get("help"))}
        kind = hints[field.name]
        if kind is bool:
            target.add_argument(*_flags(field, prefix, flags), action="store_true", **options)
            continue
        kind = next((k for k in typing.get_args(kind) if k is not type(None)), kind)
        options.update(default=default, type=meta.get("parse") or kind)
        if meta.get("choices") is not None and meta.get("cli_choices", True):
            options["choices"] = meta["choices"]
        if meta.get("metavar"):
            options["metavar"] = meta["metavar"]
        elif flags and field.name in flags:  # as argparse would name the renamed option
            options["metavar"] = flags[field.name].lstrip("-").replace("-", "_").upper()
        target.add_argument(*_flags(field, prefix, flags), **options)
    return groups


def from_args(cls: type, args: argparse.Namespace, *, prefix: str = "", **given: Any) -> Any:
    """``cls`` made from the options :func:`add_options` added (options left at None
    take the dataclass default); ``given`` fields win over the arguments."""
    values = {}
    for field in _cli_fields(cls, None, ()):
        value = getattr(args, _dest(field, prefix), None)
        if value is not None:
            values[field.name] = value
    return cls(**{**values, **given})


@contextlib.contextmanager
def usage_errors(*classes: type, prefix: str = "", flags: Optional[Mapping[str, str]] = None,
                 names: Optional[Mapping[str, str]] = None) -> Iterator[None]:
    """Re-raise a :class:`SettingError` from within as a :class:`~nas.common.UsageError`
    that names the flags of ``classes`` (as :func:`add_options` made them), or
    ``names`` where given."""
    shown: dict[str, str] = {}
    for cls in classes:
        shown.update(flag_names(cls, prefix=prefix, flags=flags))
    shown.update(names or {})
    try:
        yield
    except SettingError as error:
        raise UsageError(error.render(shown)) from None


@dataclasses.dataclass(frozen=True)
class ProxySettings(Settings):
    """The proxy-train evaluator's protocol, the one ``nas search``, ``nas scale --grid``
    and the benchmarks train under.

    The defaults: 3 epochs on 10,000 training images at 32 px, AdamW (peak 7.8e-3),
    one-cycle, batch 128, validated on 5,000 held-out training images. Batch 128 beat 64
    and 256 at equal time (more steps than 256, faster images than 64); see
    docs/training.md. benchmarks/bench_proxy.py measures EfficientNet-B0 under it. At
    5,000 validation images an accuracy near 87% has a standard error of half a point;
    fewer make trials faster."""

    resolution: int = setting(32, "input size of proxy training and zero-cost scoring "
                              "(default %(default)s)", low=8, high=1024)
    subset: int = setting(10000, "training images per proxy run (default %(default)s)",
                          low=10)
    epochs: int = setting(3, "epochs per proxy run (default %(default)s)", low=1)
    batch_size: int = setting(128, "images per proxy-training batch (default %(default)s)",
                              low=2)
    val_size: int = setting(5000, "training images held out to score proxy runs on, every "
                            "epoch (default %(default)s)", low=10, metavar="N")
