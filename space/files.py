"""Reading the small files a user names (genomes, spaces, coefficients), with bounds.

A path may name ``/dev/zero``, a FIFO or a file of gigabytes, and JSON may hold an
integer of thousands of digits (Python refuses to convert more than 4,300 and says so
with a hint about ``sys.set_int_max_str_digits``). These files are kilobytes, so only a
regular file is read, at most :data:`MAX_TEXT_BYTES` of it, and an integer of more than
:data:`MAX_INTEGER_DIGITS` digits becomes :class:`HugeInteger`, an out-of-range stand-in
that the schema's range checks then reject, naming the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

__all__ = ["MAX_TEXT_BYTES", "MAX_INTEGER_DIGITS", "HugeInteger", "read_text_file",
           "loads_json", "tame_integers"]

# A genome at every limit of its schema is under 200 KB of JSON.
MAX_TEXT_BYTES = 16 * 2**20
# Far above any count a genome or space holds (the largest limit is 16,384), below
# Python's 4,300-digit conversion limit.
MAX_INTEGER_DIGITS = 100


class HugeInteger(int):
    """An integer of more digits than :data:`MAX_INTEGER_DIGITS`, kept as ``+-10**100``
    (outside every range of the schema) and shown by its length, not its digits."""

    digits: int

    def __new__(cls, *, negative: bool, digits: int) -> "HugeInteger":
        value = super().__new__(cls, (-1 if negative else 1) * 10 ** MAX_INTEGER_DIGITS)
        value.digits = digits
        return value

    def __repr__(self) -> str:
        return f"<an integer of {self.digits:,} digits>"

    __str__ = __repr__


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        return HugeInteger(negative=text.startswith("-"), digits=digits)
    return int(text)


def read_text_file(source: Union[str, os.PathLike], what: str,
                   error: type[Exception]) -> str:
    """The UTF-8 text of the regular file ``source``; ``error(message)`` for a missing,
    special, oversized or undecodable file. ``what`` names it in messages
    ("genome file")."""
    path = Path(source)
    try:
        if not path.exists():
            raise error(f"{what} {str(path)!r} does not exist")
        if not path.is_file():
            raise error(f"{what} {str(path)!r} is not a regular file")
        with path.open("rb") as stream:
            raw = stream.read(MAX_TEXT_BYTES + 1)
        if len(raw) > MAX_TEXT_BYTES:
            raise error(f"{what} {str(path)!r} is larger than {MAX_TEXT_BYTES // 2**20} MiB; "
                        "such files are a few kilobytes")
        return raw.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"cannot read {what} {str(path)!r}: not UTF-8 text ({problem.reason} at "
                    f"byte {problem.start})") from None
    except OSError as problem:
        raise error(f"cannot read {what} {str(path)!r}: "
                    f"{problem.strerror or problem}") from None


def loads_json(text: str, what: str, error: type[Exception]) -> Any:
    """``json.loads`` with huge integers as :class:`HugeInteger`; ``error(message)`` for
    text that is not JSON or is nested too deeply."""
    try:
        return json.loads(text, parse_int=_integer)
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    except ValueError as problem:  # json.JSONDecodeError is one
        raise error(f"{what} is not valid JSON: {problem}") from None


def tame_integers(data: Any) -> Any:
    """``data`` (parsed TOML: dicts, lists, scalars) with every integer of more than
    :data:`MAX_INTEGER_DIGITS` digits as :class:`HugeInteger`: a 400-digit integer passes
    Python's conversion limit but not ``float()``, which range checks may call."""
    if isinstance(data, dict):
        return {key: tame_integers(value) for key, value in data.items()}
    if isinstance(data, list):
        return [tame_integers(value) for value in data]
    if isinstance(data, int) and not isinstance(data, bool) \
            and abs(data) >= 10 ** MAX_INTEGER_DIGITS:
        return HugeInteger(negative=data < 0, digits=len(str(abs(data))))
    return data
