"""The project's exception hierarchy.

Every error a user can cause derives from :class:`NasError`; the CLI turns it into
one line on stderr and exit code 2. The ``ValueError`` subclasses let library users
catch validation problems the Python way.
"""

from __future__ import annotations

__all__ = ["NasError", "GenomeError", "SpaceError"]


class NasError(Exception):
    """Base of every error a user of the tool can cause and fix."""


class GenomeError(NasError, ValueError):
    """A genome (file, dict or dataclass) that is malformed or impossible."""


class SpaceError(NasError, ValueError):
    """A search-space declaration that is malformed or impossible."""
