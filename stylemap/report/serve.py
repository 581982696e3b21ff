"""`stylemap serve`: the report and its interactive maps over localhost http, opened in one step.

Why: the explorer fetches its data files, which a page opened from disk (file://) cannot do, so the report's map
links need http. Only what the report shows is served, at the paths the report links to: `plots/` (the report and
its figures) and `data/explore/` (the explorer, which holds only platforms whose terms allow sharing per-image
data). Everything else in the project (samples, labels, models) answers 404.
"""
from __future__ import annotations

import functools
import posixpath
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPORT = "plots/report.html"
SERVED = ("plots/", "data/explore/")


class _Handler(SimpleHTTPRequestHandler):
    def send_head(self):
        rel = posixpath.normpath(unquote(urlsplit(self.path).path)).lstrip("/")
        if rel in ("", "."):
            self.send_response(302)
            self.send_header("Location", f"/{REPORT}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if not rel.startswith(SERVED):
            self.send_error(404, "stylemap serve shares the report and the explorer only")
            return None
        return super().send_head()

    def log_message(self, *args) -> None:  # a line per thumbnail would bury the URL
        pass


def server(root: Path, port: int = 8000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An http server for project `root` (port 0: any free port); FileNotFoundError when the report is not built."""
    if not (root / REPORT).is_file():
        raise FileNotFoundError(f"{root / REPORT} not found: run `dvc repro` first (the report stage writes it)")
    return ThreadingHTTPServer((host, port), functools.partial(_Handler, directory=str(root)))


def url(httpd: ThreadingHTTPServer) -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host}:{port}/{REPORT}"
