"""``nas dashboard``: optuna-dashboard served on a study's storage (:func:`serve`).

What the dashboard shows for each trial (its note and artifacts) is written by the search
(:mod:`nas.trial_notes`); where the study lives is :mod:`nas.run`."""

from __future__ import annotations

import logging
import socket
from socketserver import ThreadingMixIn
from typing import Callable, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna.artifacts import FileSystemArtifactStore

from space import NasError

from .dashboard_lookups import index_trial_lookups
from .run import StudyLocation
from .signals import check_stop, handle_signals
from .storage import open_storage
from .study_view import hide_screened

__all__ = ["DashboardError", "serve", "LOOPBACK"]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class DashboardError(NasError):
    """A port that cannot be used."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connections must not keep Ctrl-C waiting

    def service_actions(self) -> None:
        # Called by serve_forever at every poll: Ctrl-C and SIGTERM stop it here.
        check_stop()


class _QuietHandler(WSGIRequestHandler):
    """Requests go to the debug log, not to stderr line by line."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
        log.debug("%s %s", self.address_string(), format % args)


def serve(location: StudyLocation, *, host: str = LOOPBACK, port: int = 0,
          on_ready: Optional[Callable[[str], None]] = None) -> None:
    """Serve optuna-dashboard for ``location`` on ``host:port`` (port 0: a free one) until
    Ctrl-C or SIGTERM. ``on_ready`` receives the URL of the study's page once the socket
    listens. Artifacts (genome JSON, diagrams) come from the run folder's store."""
    from optuna_dashboard import wsgi  # imported late: it pulls in a web framework

    # Screened genomes (most trials of a search with a cost window) are left out: the page
    # lists the evaluated trials, and `nas report` and trials.csv count the others.
    storage = hide_screened(open_storage(location.storage_url, read_only=True))
    index_trial_lookups()  # each trial's note and artifacts found by trial, not by a scan
    study_id = storage.get_study_id_from_name(location.study_name)
    artifacts = location.artifacts_dir
    app = wsgi(storage, artifact_store=FileSystemArtifactStore(artifacts) if artifacts else None)
    server_class = _Server
    if ":" in host:
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    try:
        server = make_server(host, port, app, server_class=server_class,
                             handler_class=_QuietHandler)
    except OSError as error:
        raise DashboardError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                             "pick another --port (or leave it out for a free one)") from None
    bound_port = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}/dashboard/studies/{study_id}"
    try:
        with handle_signals(graceful=True):
            if on_ready is not None:
                on_ready(url)
            server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
