"""Keeping storage passwords out of everything the process says.

A password can hold any character: a quote, a space, an unencoded ``@``, ``%``-escapes; a
pattern over the text cannot know where such a password ends, and a database driver's
own error repeats pieces of the URL (the host SQLAlchemy read from it, say). So a URL is
taken apart where it is given (:func:`register_url`: every ``--storage`` at the command
line, every URL :func:`nas.storage.open_storage` opens), and its password, as written and
%-decoded and %-encoded, is removed literally from every message: :func:`mask_url` on any
text, and :func:`masked_streams` on everything written to stdout and stderr (the error
line, logging, warnings, progress bars, a traceback) while a command runs. The patterns
below still mask URLs and ``password=`` settings of passwords nobody registered.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional
from urllib.parse import quote, quote_plus, unquote

__all__ = ["mask_url", "register_url", "password_of", "masked_streams", "stream_handlers"]

MASK = "***"

# The password runs to the *last* "@" of the URL, as unencoded "@"s in a password would;
# masking a little too much is harmless, showing part of a password is not.
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*:)(?P<password>[^\s'\"]*)@")
# libpq's key=value form ("password=secret"), which drivers can echo back.
_DSN_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)", re.IGNORECASE)

# Literal secrets, longest first so that a password containing another is removed whole.
_secrets: list[str] = []


def password_of(url: str) -> Optional[str]:
    """The password of ``scheme://user:password@host/...`` as written, running to the last
    ``@`` (so unencoded ``@``s, quotes and spaces stay inside it); None without one. File
    URLs (``sqlite:////a:b@c/x.db``) have none."""
    scheme, separator, rest = str(url).partition("://")
    at = rest.rfind("@")
    if not separator or at < 0 or rest.startswith("/"):
        return None
    user, colon, password = rest[:at].partition(":")
    return password if colon and password else None


def register_url(url: Optional[str]) -> None:
    """Remember the password of ``url`` (if it has one) so that every later message hides
    it, in each form a driver or a library may print it."""
    password = password_of(url) if url else None
    if password is None:
        return
    decoded = unquote(password)
    forms = {password, decoded, quote(decoded, safe=""), quote_plus(decoded),
             # After an unencoded "@" a URL parser reads the rest as the host, which
             # drivers print ("piece@host"): the "@" keeps a short piece from matching
             # ordinary words.
             *(f"{piece}@" for piece in password.split("@")[1:])}
    _secrets[:] = sorted(set(_secrets) | {form for form in forms if form},
                         key=len, reverse=True)
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _masked_excepthook


def mask_url(text: object) -> str:
    """``text`` with every registered password and every URL or ``password=`` password
    replaced by ``***``: ``postgresql://user:secret@host/db`` ->
    ``postgresql://user:***@host/db``, anywhere in ``text``."""
    masked = str(text)
    for secret in _secrets:
        masked = masked.replace(secret, MASK)
    masked = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", masked)
    return _DSN_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}", masked)


class _MaskingStream:
    """A text stream that masks what is written to it and is otherwise the stream itself."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask_url(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def masked_streams() -> Iterator[None]:
    """Mask everything written to ``sys.stdout`` and ``sys.stderr`` (and through logging
    handlers that hold them, Optuna's among them) inside the block, when a password is
    registered; otherwise change nothing."""
    if not _secrets:
        yield
        return
    originals = sys.stdout, sys.stderr
    wrapped = {id(stream): _MaskingStream(stream) for stream in originals}
    handlers = {handler: handler.stream for handler in stream_handlers()
                if id(getattr(handler, "stream", None)) in wrapped}
    sys.stdout, sys.stderr = (wrapped[id(stream)] for stream in originals)
    for handler, stream in handlers.items():
        handler.setStream(wrapped[id(stream)])
    try:
        yield
    finally:
        for handler, stream in handlers.items():
            handler.setStream(stream)
        sys.stdout, sys.stderr = originals


def stream_handlers() -> list[logging.StreamHandler]:
    """The stream handlers of every logger (Optuna's own handler does not propagate)."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    return [handler for logger in loggers for handler in logger.handlers
            if isinstance(handler, logging.StreamHandler)]


def _masked_excepthook(kind, value, trace) -> None:
    sys.stderr.write(mask_url("".join(traceback.format_exception(kind, value, trace))))
