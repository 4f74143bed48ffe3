"""Serving the review app: a threaded WSGI server on loopback, a per-run token, the URL, the browser.

Werkzeug's server (Flask's own) is enough here: one reviewer, on this machine, a handful of
requests a second; each request gets a thread, the frame decoder serialises behind its lock.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import sys
import threading
import webbrowser

from werkzeug.serving import make_server

from faceanon_video.errors import ConfigError
from faceanon_video.review.app import create_app
from faceanon_video.review.session import ReviewSession

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class ReviewServer:
    """``url`` is ready once constructed (the socket is bound); ``serve_forever`` or ``start`` (a
    thread, for tests) then ``stop``."""

    def __init__(self, session: ReviewSession, host: str = LOOPBACK, port: int = 0, token: str | None = None) -> None:
        self.session = session
        self.token = token or secrets.token_urlsafe(32)
        self.app = create_app(session, self.token)
        check_address(host, port)
        self.server = make_server(host, port, self.app, threaded=True)
        # Werkzeug logs every request (URL and token included) at INFO: only with --debug.
        logging.getLogger("werkzeug").setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
        self.host = host
        self.port = self.server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def start(self) -> ReviewServer:
        self._thread = threading.Thread(target=self.server.serve_forever, name="review-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # serve_forever on this thread has already returned (Ctrl-C)
            self.server.shutdown()
            self._thread.join(timeout=5)
        self.server.server_close()
        self.session.close()


def check_address(host: str, port: int) -> None:
    """``ConfigError`` (one line) when ``host:port`` cannot be listened on: Werkzeug would print two
    lines of its own and exit 1 (port in use), or a traceback (unknown host)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535 (got {port})")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Werkzeug's server does
            probe.bind((host, port))
    except OSError as exc:
        reason = "the port is in use by another program" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from exc


def open_browser(url: str) -> bool:
    """Open ``url`` in the user's browser when there is one (none on a server: the URL is printed)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False  # no desktop: webbrowser would pick a text browser (lynx, w3m) and take over the terminal
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    return bool(browser.open(url))


def run(session: ReviewSession, host: str = LOOPBACK, port: int = 0, browser: bool = True, out=sys.stdout) -> None:
    """Serve until Ctrl-C (which the CLI reports); a running render is stopped and its output removed."""
    server = ReviewServer(session, host, port)
    out.write(f"Review {session.source.name} at {server.url}\n(Ctrl-C to stop)\n")
    out.flush()
    if browser:
        open_browser(server.url)
    try:
        server.serve_forever()
    finally:
        server.stop()
