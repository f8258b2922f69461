"""timm's EfficientNet block strings: one genome stage written as one string, and one
string read back, with anything a genome cannot hold refused by name.

A block string is a block type followed by ``_``-separated options in any order
(timm ``_efficientnet_builder._decode_block_str``):

- type ``ds``: depthwise-separable block, no expansion conv (``conv_op`` "mbconv",
  ``expand_ratio`` 1); ``ir``: inverted residual with a 1x1 expansion (MBConv);
  ``er``: EdgeResidual, EfficientNetV2's Fused-MBConv (``conv_op`` "fused", any ``e``,
  1 included: a kxk convolution to ``make_divisible(in x e)`` channels, then the 1x1
  projection);
- the option letters of :data:`space.schema.STAGE_FIELDS`: ``r`` repeats, ``k`` kernel,
  ``s`` stride of the stage's first block, ``e`` expansion ratio, ``c`` output channels
  before the channel multiplier, ``se`` squeeze-and-excitation ratio of the block's
  *input* channels;
- the flags of the schema: ``noskip`` is ``skip_op`` "none"; ``nre`` / ``nsw`` set the
  block's activation (ReLU / SiLU) over the model's ``act_layer``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .errors import NasError
from .genome import Stage
from .schema import STAGE_FIELDS

__all__ = ["TimmFormatError", "BlockString", "stage_string", "parse_block", "scale_repeats",
           "BLOCK_TYPES"]

# timm's block type of each conv op; an "mbconv" stage of expand ratio 1 is a "ds" block.
BLOCK_TYPES = {"ds": "mbconv", "ir": "mbconv", "er": "fused"}
# The order in which timm's published definitions write the options.
_OPTION_ORDER = ("r", "k", "s", "e", "c", "se")
_OPTION_FIELDS = {field.timm_option: field for field in STAGE_FIELDS if field.timm_option}
_FLAG_FIELDS = {flag: (field, value) for field in STAGE_FIELDS
                for value, flag in field.timm_flags}
# Per-block activation suffixes of the grammar (``nre``, ``nsw``).
_BLOCK_ACTIVATIONS = {"re": "relu", "sw": "silu"}
_OTHER_BLOCK_ACTIVATIONS = {"r6": "ReLU6", "hs": "hard-swish", "mi": "Mish"}

_UNSUPPORTED_TYPES = {
    "dsa": "a depthwise-separable block with an activation after its point-wise conv",
    "cn": "ConvBnAct, a plain convolution without a projection",
    "uir": "a universal inverted residual (MobileNetV4)",
    "mha": "multi-head attention",
    "mqa": "multi-query attention",
    "tu": "a Tucker convolution",
}
# Options whose default value is what a genome builds; any other value has no equivalent.
_DEFAULT_ONLY = {"a": ("1", "a 1x1 expansion kernel"), "p": ("1", "a 1x1 projection kernel"),
                 "d": ("0", "no space-to-depth")}
_UNSUPPORTED_OPTIONS = {"cc": "CondConv experts", "gs": "grouped (not depthwise) convolutions",
                        "fc": "a forced input width", "ir": "Tucker input rank",
                        "or": "Tucker output rank", "h": "attention heads",
                        "v": "attention key/value stride"}
_OPTION = re.compile(r"^([a-z]+)(\d.*)$")
_INTEGER = re.compile(r"^\d+$")
_NUMBER = re.compile(r"^\d+(\.\d+)?([eE][-+]?\d+)?$")
_HOLDS = "genomes hold 'ds', 'ir' and 'er' blocks"


class TimmFormatError(NasError, ValueError):
    """A timm architecture definition that no genome holds, or a genome that timm's
    strings cannot express; the message names the string or field and why."""


@dataclass(frozen=True)
class BlockString:
    """One decoded block string; ``out_channels`` before the channel multiplier.
    ``fields`` holds the stage fields the string sets (``out_channels`` excepted),
    ``activation`` a per-block override (genome activation names)."""

    text: str
    where: str
    kind: str  # "ds", "ir" or "er"
    fields: dict[str, Any]
    activation: Optional[str]

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    @property
    def repeats(self) -> int:
        return self.fields["num_layers"]


def _plain(value: float) -> str:
    """6.0 -> '6', 0.25 -> '0.25': the shortest text that reads back to the same float."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def stage_string(stage: Stage) -> str:
    """The timm block string of one genome stage (``ir_r2_k3_s2_e6_c24_se0.25``).

    ``expand_ratio`` 1 becomes a ``ds`` block written with ``e1``, as timm writes B0's
    first stage; a fused stage an ``er`` block; SE appears only when the stage has it,
    a flag only for a value other than the default."""
    if stage.conv_op == "fused":
        kind = "er"
    else:
        kind = "ds" if stage.expand_ratio == 1 else "ir"
    values = {field.timm_option: getattr(stage, field.name) for field in _OPTION_FIELDS.values()}
    parts = [kind] + [f"{letter}{_plain(values[letter]) if letter in ('e', 'se') else values[letter]}"
                      for letter in _OPTION_ORDER if letter != "se" or values[letter]]
    for field in STAGE_FIELDS:
        value = getattr(stage, field.name)
        flag = dict(field.timm_flags).get(value)
        if flag:
            parts.append(flag)
        elif (field.name != "conv_op" and not field.timm_option and not field.required
              and value != field.default):
            raise TimmFormatError(f"{field.name} {value!r} has no timm equivalent")
    return "_".join(parts)


def _tokens(kind: str, options: Sequence[str], label: str):
    """The options of a block string as ({letter: text}, {field: value}, activation)."""
    values: dict[str, str] = {}
    flags: dict[str, Any] = {}
    activation = None
    for token in options:
        if token in _FLAG_FIELDS:
            field, value = _FLAG_FIELDS[token]
            flags[field.name] = value
        elif token == "skip":
            raise TimmFormatError(f"{label}: 'skip' has no effect on {kind!r} blocks in timm "
                                  "(they keep their residual whenever shapes allow); drop it")
        elif token.startswith("n"):
            suffix = token[1:]
            if suffix in _OTHER_BLOCK_ACTIVATIONS:
                raise TimmFormatError(f"{label}: activation {token!r} "
                                      f"({_OTHER_BLOCK_ACTIVATIONS[suffix]}) has no genome "
                                      "equivalent; genomes use ReLU ('nre') or SiLU ('nsw')")
            if suffix not in _BLOCK_ACTIVATIONS:
                raise TimmFormatError(f"{label}: unknown activation option {token!r}; "
                                      "expected 'nre' or 'nsw'")
            activation = _BLOCK_ACTIVATIONS[suffix]
        else:
            match = _OPTION.match(token)
            if not match:
                raise TimmFormatError(f"{label}: unknown option {token!r}")
            key, value = match.groups()
            if key in values:
                raise TimmFormatError(f"{label}: option {key!r} appears twice")
            values[key] = value
    for key, value in values.items():
        if key in _DEFAULT_ONLY:
            default, meaning = _DEFAULT_ONLY[key]
            if value != default:
                raise TimmFormatError(f"{label}: option '{key}{value}' has no genome equivalent "
                                      f"(genomes build {meaning})")
        elif key in _UNSUPPORTED_OPTIONS:
            raise TimmFormatError(f"{label}: option '{key}{value}' ({_UNSUPPORTED_OPTIONS[key]}) "
                                  "has no genome equivalent")
        elif key not in _OPTION_FIELDS:
            raise TimmFormatError(f"{label}: unknown option '{key}{value}'")
    return values, flags, activation


def _option_value(values: dict[str, str], key: str, kind: str, label: str) -> Any:
    """The value of option ``key`` as its field's type; a missing ``se`` is 0, a missing
    ``e`` is 1 on a ``ds`` block, anything else missing is an error."""
    field = _OPTION_FIELDS[key]
    if key not in values:
        if key == "se" or (key == "e" and kind == "ds"):
            return 0.0 if key == "se" else 1.0
        if key == "e":
            raise TimmFormatError(f"{label}: the expansion option 'e' is missing "
                                  f"('{kind}' blocks need it)")
        raise TimmFormatError(f"{label}: the {field.name} option '{key}' is missing")
    text = values[key]
    if field.type is int:
        if key == "k" and "." in text:
            raise TimmFormatError(f"{label}: mixed kernels 'k{text}' (MixNet) have no "
                                  "genome equivalent; use one kernel size")
        if not _INTEGER.match(text):
            raise TimmFormatError(f"{label}: '{key}{text}' is not a whole number")
        return int(text)
    if not _NUMBER.match(text):
        raise TimmFormatError(f"{label}: '{key}{text}' is not a number")
    return float(text)


def parse_block(text: Any, where: str) -> BlockString:
    if not isinstance(text, str) or not text:
        raise TimmFormatError(f"{where} = {text!r}: expected a block string such as "
                              "'ir_r2_k3_s2_e6_c24_se0.25'")
    kind, *options = text.split("_")
    label = f"{where} {text!r}"
    if kind in _UNSUPPORTED_TYPES:
        raise TimmFormatError(f"{label}: block type {kind!r} ({_UNSUPPORTED_TYPES[kind]}) has no "
                              f"genome equivalent; {_HOLDS}")
    if kind not in BLOCK_TYPES:
        raise TimmFormatError(f"{label}: unknown block type {kind!r}; {_HOLDS}")
    values, flags, activation = _tokens(kind, options, label)
    fields = {field.name: _option_value(values, letter, kind, label)
              for letter, field in _OPTION_FIELDS.items()}
    fields.update(flags, conv_op=BLOCK_TYPES[kind])
    if fields["num_layers"] < 1:
        raise TimmFormatError(f"{label}: 'r{fields['num_layers']}' must be at least 1")
    if fields["stride"] not in (1, 2):
        raise TimmFormatError(f"{label}: 's{fields['stride']}': timm's builder and genomes take "
                              "strides 1 and 2")
    if kind == "ds" and fields["expand_ratio"] != 1:
        raise TimmFormatError(f"{label}: 'e{values['e']}' has no effect on a 'ds' block in "
                              "timm (it has no expansion conv); use 'ir' or write 'e1'")
    if kind == "ir" and fields["expand_ratio"] == 1:
        raise TimmFormatError(f"{label}: an 'ir' block with e1 keeps a 1x1 expansion conv that "
                              "a genome's expand_ratio 1 lacks; write it as a 'ds' block")
    return BlockString(text=text, where=where, kind=kind, fields=fields, activation=activation)


def scale_repeats(repeats: Sequence[int], multiplier: float, truncation: str) -> list[int]:
    """timm's per-stage depth scaling: the stage total is scaled (``ceil`` or ``round``)
    and shared among its strings in proportion, from the last string backwards so that
    the first (striding) string is the least likely to grow."""
    total = sum(repeats)
    if truncation == "round":
        target = max(1, round(total * multiplier))
    else:
        target = int(math.ceil(total * multiplier))
    shares: list[int] = []
    for count in reversed(repeats):
        share = max(1, round(count / total * target))
        shares.append(share)
        total -= count
        target -= share
    return shares[::-1]
