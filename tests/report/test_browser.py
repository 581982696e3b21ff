"""The interactive explorer in a real headless browser: it draws every point, filters, shows a card, no JS errors.

Needs Debian's chromium at /usr/bin/chromium (installed by the setup script); skipped without it.
The page records uncaught errors and console.error calls into <html data-errors>, and sets
<body data-points-drawn> after drawing, so `--dump-dom` shows both.
"""
from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stylemap.report import render as stylemap

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed at /usr/bin/chromium")
CLASSES = ["anime", "oil_painting", "photo", "pixel_art", "watercolor"]
N = 3000


def dump_dom(url: str, profile: Path) -> tuple[str, str]:
    """(DOM after scripts ran, browser stderr) of a page loaded offline in headless chromium."""
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
           "--window-size=1200,800", "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def attribute(dom: str, name: str) -> str | None:
    match = re.search(rf'{name}="([^"]*)"', dom)
    return match.group(1) if match else None


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(0)
    top = [list(rng.permutation(CLASSES)[:3]) for _ in range(N)]
    points = pd.DataFrame({"image_id": [f"p/{i}" for i in range(N)], "x": rng.normal(size=N), "y": rng.normal(size=N),
                           "top3": top, "top3_prob": [[0.7, 0.2, 0.1]] * N})
    buf = io.BytesIO()
    Image.new("RGB", (200, 150), (30, 120, 200)).save(buf, format="PNG")
    details = pd.DataFrame({"image_id": ["p/7"], "prompt": ['a "quoted" <b>castle</b> & moon'],
                            "thumb": [stylemap.thumbnail_uri(buf.getvalue())]})
    path = tmp_path_factory.mktemp("explore") / "p.html"
    path.write_text(stylemap.explorer_html(stylemap.explorer_data(points, details, CLASSES, "p")))
    return path, points


def test_draws_every_point_without_errors(page, tmp_path):
    path, _ = page
    dom, log = dump_dom(path.as_uri(), tmp_path / "profile")
    assert attribute(dom, "data-errors") == ""
    assert "Uncaught" not in log
    assert attribute(dom, "data-points-drawn") == str(N)
    assert len(re.findall(r'<input type="checkbox"[^>]*data-class="\d+"', dom)) == len(CLASSES)  # one filter per style


def test_style_filter_draws_only_chosen_styles(page, tmp_path):
    path, points = page
    dom, _ = dump_dom(path.as_uri() + "#styles=anime,photo", tmp_path / "profile")
    expected = sum(t[0] in ("anime", "photo") for t in points["top3"])
    assert 0 < expected < N
    assert attribute(dom, "data-points-drawn") == str(expected)
    assert attribute(dom, "data-errors") == ""


def test_card_shows_thumbnail_prompt_and_top3(page, tmp_path):
    path, points = page
    dom, _ = dump_dom(path.as_uri() + "#point=7", tmp_path / "profile")
    assert attribute(dom, "data-card") == "7"
    card = dom.split('id="card"')[1].split("</div></div>")[0]
    assert '<img src="data:image/jpeg;base64,' in card
    assert "a \"quoted\" &lt;b&gt;castle&lt;/b&gt; &amp; moon" in card  # escaped, not injected
    for style in points.loc[7, "top3"]:
        assert style in card
    assert attribute(dom, "data-errors") == ""


def test_error_hook_reports_a_broken_page(page, tmp_path):
    path, _ = page
    broken = tmp_path / "broken.html"
    broken.write_text(path.read_text().replace('"x":[', '"x":[oops', 1))
    dom, _ = dump_dom(broken.as_uri(), tmp_path / "profile")
    assert "JSON" in (attribute(dom, "data-errors") or "")
    assert attribute(dom, "data-points-drawn") is None
