"""Open explorer folders as a user would: served over localhost http, in Debian's headless chromium.

Shared by the browser test and bench/bench_map.py (bench never imports tests/). Playwright (a test
dependency from PyPI) drives /usr/bin/chromium; its own browser download does not work offline.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # WebGL still runs, on SwiftShader (CPU)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per request would drown test and bench output
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """`python -m http.server -d directory` on a free localhost port, in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def chromium():
    """A headless chromium (Playwright Browser) with a fresh profile, closed on exit."""
    from playwright.sync_api import sync_playwright  # a test/bench dependency, not the pipeline's

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
