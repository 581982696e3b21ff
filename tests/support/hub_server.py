"""A stand-in for the Hugging Face Hub on localhost: a folder served as a dataset repository, for tests and bench/.

Why: the `hf` source must be tested and measured the way it reads the Hub, offline. The server answers what
huggingface_hub asks when it downloads or range-reads a file, as the Hub does for LFS/Xet files: HEAD or GET of
`<endpoint>/datasets/<repo>/resolve/<revision>/<path>` is a 302 to a second origin standing in for the CDN, with
the headers huggingface_hub reads (X-Repo-Commit, X-Linked-Etag, X-Linked-Size); the CDN answers GET, whole or
with one `Range` (206). A file that is not there is a 404 with `X-Error-Code: EntryNotFound`. Any repo id and
revision name the one folder. `traffic` counts requests per origin and the body bytes the CDN sent. `stall` makes
the CDN misbehave on ranged GETs: never answer, or stop halfway through the body (until the server closes).
`fault` makes it answer them wrongly (FAULTS), on every try, or with "flaky:" before it on each range's first try only.

    with HubServer(folder) as hub:      # Source(kind="hf", path="poloclub/diffusiondb", endpoint=hub.endpoint)
        ...
        hub.traffic  # Counter({"resolve": ..., "cdn": ..., "cdn_bytes": ...})
"""
from __future__ import annotations

import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

RESOLVE = re.compile(r"^/datasets/[^/]+/[^/]+/resolve/[^/]+/(.+)$")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
FAULTS = {  # a ranged GET's wrong answers, as a misbehaving CDN gives them
    "short": "206 with half the bytes asked, headers saying so",
    "long": "206 with 100 bytes more than asked, Content-Length saying so",
    "ignored": "200 with the whole file: Range ignored",
    "offset": "206 with the range one byte later, Content-Range saying so",
    "size": "206 with a Content-Range whose size is not the file's",
    "cut": "206 whose Content-Length is right and whose body stops early, the connection then closed",
    "416": "416 Range Not Satisfiable", "429": "429 that never clears", "503": "503 that never clears",
    "reset": "the connection closed without an answer",
}


class HubServer:
    """Serves `root` on two localhost ports (the Hub and its CDN); a context manager."""

    def __init__(self, root: str | Path, commit: str = "5" * 40, stall: str = "", fault: str = ""):
        self.root, self.commit = Path(root), commit
        self.stall = stall  # "" | "silent": a Range GET is never answered | "mid_body": its body stops halfway
        self.flaky, self.fault = fault.startswith("flaky:"), fault.removeprefix("flaky:")
        assert self.fault in ("", *FAULTS), self.fault
        self.tried: Counter = Counter()  # (path, Range) -> faulty answers given: a flaky fault answers once
        self.released = threading.Event()  # set on exit: stalled handlers return
        self.traffic: Counter = Counter()
        self._lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        for server in (self._hub, self._cdn):
            server.daemon_threads, server.owner = True, self
            server.handle_error = lambda *_: None  # a client that hangs up on a faulty answer is what tests want

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_port}"

    def misbehaves(self, path: str, wanted: str) -> bool:
        """Whether this ranged GET gets the fault: always, or when flaky only the first time it is asked."""
        with self._lock:
            if self.flaky and self.tried[path, wanted]:
                return False
            self.tried[path, wanted] += 1
            return True

    def count(self, **amounts: int) -> None:
        with self._lock:
            self.traffic.update(amounts)

    def file(self, rel: str) -> Path | None:
        rel = unquote(rel)
        path = self.root / rel
        return path if ".." not in rel.split("/") and path.is_file() else None

    def __enter__(self) -> HubServer:
        for server in (self._hub, self._cdn):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's client expects
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle would hold the body for an ACK

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        hub: HubServer = self.server.owner  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        if self.server is hub._hub:
            hub.count(resolve=1)
            match = RESOLVE.match(path)
            target = hub.file(match.group(1)) if match else None
            if target is None:
                return self._empty(404, {"X-Error-Code": "EntryNotFound"})
            stat = target.stat()
            return self._empty(302, {
                "Location": f"http://127.0.0.1:{hub._cdn.server_port}/{match.group(1)}",
                "X-Repo-Commit": hub.commit, "X-Linked-Etag": f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"',
                "X-Linked-Size": str(stat.st_size)})
        hub.count(cdn=1)
        target = hub.file(path.lstrip("/"))
        if target is None:
            return self._empty(404, {})
        size = target.stat().st_size
        start, end, status = 0, size, 200
        wanted = RANGE.match(self.headers.get("Range", ""))
        if wanted and wanted.group(1):
            start, end, status = int(wanted.group(1)), min(size, int(wanted.group(2) or size - 1) + 1), 206
        elif wanted and wanted.group(2):  # the last N bytes
            start, end, status = max(0, size - int(wanted.group(2))), size, 206
        if start >= end:
            return self._empty(416, {"Content-Range": f"bytes */{size}"})
        if wanted and hub.fault and hub.misbehaves(path, self.headers["Range"]):
            hub.count(faults=1)
            return self._fault(hub.fault, target, start, end, size)
        if wanted and hub.stall == "silent":
            hub.count(stalled=1)
            return hub.released.wait()
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if body:
            hub.count(cdn_bytes=end - start)
            with target.open("rb") as f:
                f.seek(start)
                if wanted and hub.stall == "mid_body":
                    hub.count(stalled=1)
                    _copy(f, self.wfile, (end - start) // 2)
                    self.wfile.flush()
                    return hub.released.wait()
                _copy(f, self.wfile, end - start)

    def _fault(self, fault: str, target: Path, start: int, end: int, size: int) -> None:
        if fault == "reset":
            self.close_connection = True
            return
        if fault in ("416", "429", "503"):
            return self._empty(int(fault), {"Content-Range": f"bytes */{size}"} if fault == "416" else {})
        status, length, claim = 206, end - start, f"bytes {start}-{end - 1}/{size}"
        if fault == "short":
            end = start + max(1, length // 2)
            claim, length = f"bytes {start}-{end - 1}/{size}", end - start
        elif fault == "long":
            length += 100
        elif fault == "ignored":
            status, start, end, length, claim = 200, 0, size, size, ""
        elif fault == "offset":
            start, end = start + 1, min(size, end + 1)
            length, claim = end - start, f"bytes {start}-{end - 1}/{size}"
        elif fault == "size":
            claim = f"bytes {start}-{end - 1}/{size + 1}"
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        if claim:
            self.send_header("Content-Range", claim)
        self.end_headers()
        with target.open("rb") as f:
            f.seek(start)
            _copy(f, self.wfile, (end - start) // 2 if fault == "cut" else end - start)
        self.wfile.write(b"\0" * 100 if fault == "long" else b"")
        self.close_connection = fault == "cut"

    def _empty(self, status: int, headers: dict) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": "0"}.items():
            self.send_header(key, value)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _copy(src, dst, n: int) -> None:
    """Exactly n bytes from src to dst, a chunk at a time (a whole part is not held in memory)."""
    while n > 0:
        chunk = src.read(min(n, 1 << 20))
        if not chunk:
            break
        dst.write(chunk)
        n -= len(chunk)
