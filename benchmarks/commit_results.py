"""Commit a long benchmark's result files as they arrive, so that a run killed hours in
(or a session that ends) leaves its finished results in git.

    from commit_results import commit_results
    commit_results([out / "results.json"], "Reference accuracies: 12 of 64", REPO)

Only the given paths are committed (``git commit -- <paths>``), whatever else is staged
or modified, after ``git add -f`` of exactly those paths because run folders are
gitignored. Another git process holding ``.git/index.lock`` is waited for; any other
failure is a logged warning, never an exception: losing one commit must not stop hours
of training.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Sequence, Union

__all__ = ["commit_results"]

log = logging.getLogger(__name__)


def commit_results(paths: Sequence[Union[str, Path]], message: str,
                   repo_root: Union[str, Path], *, attempts: int = 5,
                   pause: float = 2.0) -> bool:
    """Commit ``paths`` (relative to the current directory, or absolute) in the git
    repository at ``repo_root`` (or holding it: any folder inside will do) with
    ``message``. Returns True when committed or when
    the paths hold what HEAD holds already, False (with a warning) when git failed. A
    held index.lock is retried ``attempts`` times, ``pause`` seconds apart."""
    files = [str(Path(path).absolute()) for path in paths]
    if not files:
        return True

    def git(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(repo_root), *arguments], capture_output=True,
                              text=True, timeout=120)

    reason = "git failed"
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause)
        try:
            failed = git("add", "-f", "--", *files)
            if failed.returncode == 0:
                if git("diff", "--cached", "--quiet", "--", *files).returncode == 0:
                    return True
                failed = git("commit", "-q", "-m", message, "--", *files)
                if failed.returncode == 0:
                    return True
        except (OSError, subprocess.TimeoutExpired) as error:
            reason = str(error)
            break
        reason = (failed.stderr or failed.stdout).strip() or f"git exit {failed.returncode}"
        if "index.lock" not in reason:
            break
    log.warning("not committed (%s): %s", message, reason.splitlines()[0])
    return False
