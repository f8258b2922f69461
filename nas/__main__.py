"""``python -m nas`` and the ``nas`` console script: the command line under tcmalloc where
the system has it (see :mod:`nas.allocator`)."""

import sys

from .allocator import reexec_with_tcmalloc


def entry() -> None:
    # Before the command line's own imports, which the re-executed process would pay again.
    reexec_with_tcmalloc()
    from .cli import main

    sys.exit(main())


if __name__ == "__main__":
    entry()
