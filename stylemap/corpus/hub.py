"""Files of a Hugging Face Hub dataset, read by HTTP range requests or downloaded whole and dropped after use.

Why: a uniform draw of 500k of DiffusionDB 2M's rows touches all 2,000 of its part zips (1.6 TB). A zip's central
directory, at its end, addresses every member, so `open_ranges` reads a part with a request for its tail (the
end record, and the directory when small), one for the rest of the directory, then one per member the caller
reads: only the drawn images that passed the prompt filters (README "Sampling the Hub").

The Hub's /resolve/ URL is asked once per file (a HEAD: size, commit, and the storage location it redirects to);
ranges are read from that location, so the Hub's resolver rate limit (3,000 requests per 5 minutes anonymous)
counts parts, not images, and, as huggingface_hub does, the token is never sent off the Hub. Every request goes
through huggingface_hub's client with a read timeout (a stalled server is retried like a failed one). A range
answer is checked before its body is kept: status 206, the Content-Range asked for (offset, end and the file's
size), and a body of exactly that length, read in chunks and refused the moment it runs long. Any other answer
(a 200 that ignores Range, a 416, a 429 or 503, a reset, a short or long body) is the server's fault, not the
data's: it is retried RETRIES times, then the stage stops with one line (exit 2) and a rerun resumes at the
part. So a flaky CDN never becomes a reject in the sample; only bytes that arrive as asked and do not parse do.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.utils import build_hf_headers, get_session

from stylemap.entry import Unavailable

TAIL = 4096  # first request of a zip: end record + zip64 locator (+ a small directory); more would be image bytes
LOCAL_SLACK = 64  # a member's local header may carry a few more extra bytes than its directory entry
# huggingface_hub's shared client has no timeout: a range GET that stalls (no answer, or a body that stops) would
# hang the stage. Seconds without a byte before it is retried (env HF_HUB_DOWNLOAD_TIMEOUT, as whole downloads),
# and how many retries (waits WAIT_S doubling to 8 s: 1, 2, 4, 8, 8) before a FetchError stops the stage: ~2 min
# at most per request.
READ_TIMEOUT_S = constants.HF_HUB_DOWNLOAD_TIMEOUT
RETRIES = 5
WAIT_S = 1.0


class FetchError(Unavailable):
    """A request still failed after RETRIES retries: the stage stops with one line (a rerun resumes at the part)."""


class _Refused(Exception):
    """One try of a range request got an answer other than the bytes asked for (retried)."""


class RangeFile(io.RawIOBase):
    """A remote file as a seekable read-only stream (for zipfile): a read is one ranged GET, except for the bytes
    the last `prefetch` fetched, served from memory, so a member's header, name and data cost one request."""

    def __init__(self, url: str, size: int, headers: dict, name: str):
        super().__init__()
        self.url, self.size, self.headers, self.name = url, size, headers, name
        self.pos, self.block_start, self.block = 0, 0, b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def prefetch(self, start: int, end: int) -> None:
        """Hold bytes [start, end) in memory, fetching only what the block held before lacks."""
        start, end = max(0, start), min(self.size, end)
        self.block_start, self.block = start, self._read(start, end)

    def readinto(self, buffer) -> int:
        data = self._read(self.pos, min(self.pos + len(buffer), self.size))
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def _read(self, start: int, end: int) -> bytes:
        lo, hi = self.block_start, self.block_start + len(self.block)
        if end <= lo or start >= hi:
            return self._get(start, end)
        return self._get(start, lo) + self.block[max(start, lo) - lo : min(end, hi) - lo] + self._get(hi, end)

    def _get(self, start: int, end: int) -> bytes:
        """Bytes [start, end), after at most RETRIES retries; FetchError naming the last fault otherwise."""
        if start >= end:
            return b""
        for attempt in range(RETRIES + 1):
            if attempt:
                time.sleep(min(WAIT_S * 2 ** (attempt - 1), 8))
            try:
                return self._try(start, end)
            except _Refused as err:
                fault = str(err)
        raise FetchError(f"{self.name}: bytes {start}-{end - 1}: {fault} (after {RETRIES} retries)")

    def _try(self, start: int, end: int) -> bytes:
        """One ranged GET, its body kept only when the answer is the range asked for; _Refused otherwise."""
        asked = f"bytes {start}-{end - 1}/{self.size}"
        body = bytearray()
        try:
            with get_session().stream("GET", self.url, headers={**self.headers, "Range": f"bytes={start}-{end - 1}"},
                                      timeout=READ_TIMEOUT_S) as response:
                got = response.headers.get("Content-Range", "")
                if response.status_code != 206 or got != asked:
                    raise _Refused(f"HTTP {response.status_code} with Content-Range {got!r}, asked {asked!r}")
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > end - start:
                        raise _Refused(f"the body runs past the {end - start} bytes asked")
        except _Refused:
            raise
        except Exception as err:  # noqa: BLE001 - a timeout, reset or protocol error of the client: retried
            raise _Refused(f"{type(err).__name__}: {err}") from None
        if len(body) != end - start:
            raise _Refused(f"{len(body)} bytes of the {end - start} asked")
        return bytes(body)


def ask(what: str, call: Callable, *args, **kwargs):
    """`call` (a huggingface_hub function, which retries on its own), with any failure but EntryNotFoundError made a
    FetchError naming `what`: one line, not the client's chained tracebacks."""
    try:
        return call(*args, **kwargs)
    except EntryNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - httpx and Hub errors alike
        raise FetchError(f"{what}: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}") from None


def open_ranges(repo: str, path: str, revision: str, endpoint: str | None) -> RangeFile | None:
    """`path` of dataset `repo` as a RangeFile with its tail prefetched; None when the Hub has no such file."""
    url = hf_hub_url(repo, path, repo_type="dataset", revision=revision, endpoint=endpoint)
    try:
        meta = ask(path, get_hf_file_metadata, url, endpoint=endpoint, retry_on_errors=True)
    except EntryNotFoundError:
        return None
    same_origin = urlsplit(meta.location)[:2] == urlsplit(url)[:2]
    remote = RangeFile(meta.location, meta.size, build_hf_headers() if same_origin else {}, path)
    remote.prefetch(remote.size - TAIL, remote.size)
    return remote


def download(repo: str, path: str, revision: str, endpoint: str | None, cache_dir: str,
             keep: bool) -> tuple[Path | None, Callable[[], None]]:
    """`path` downloaded whole into the Hub cache at `cache_dir`, and the call that deletes it once used (a no-op
    when `keep`, or when the file was in the cache before: it is someone's, not this run's)."""
    before = try_to_load_from_cache(repo, path, cache_dir=cache_dir, revision=revision, repo_type="dataset")
    try:
        local = Path(ask(path, hf_hub_download, repo, path, repo_type="dataset", revision=revision, cache_dir=cache_dir,
                         endpoint=endpoint))
    except EntryNotFoundError:
        return None, lambda: None

    def drop() -> None:
        if not keep and not isinstance(before, str):
            local.resolve().unlink(missing_ok=True)  # the blob, then the snapshot's link to it
            local.unlink(missing_ok=True)

    return local, drop
