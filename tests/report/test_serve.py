"""`stylemap serve`: the committed report and explorer folders for each of its map links, served as a user runs it;
the report's map links open drawn maps in a real browser, nothing but the report and the explorer is served, and
the report opened from disk still shows its tables and figures and says what to run for the map."""
from __future__ import annotations

import io
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stylemap.paths import REPO
from stylemap.report import browser, explorer, serve

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The repository's plots/report.html, params.yaml (never to be served) and an explorer folder per map link."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "plots", root / "plots")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    report = (root / serve.REPORT).read_text()
    platforms = re.findall(r'class="map-link" href="\.\./data/explore/index\.html\?platform=([^"&]+)"', report)
    classes = sorted(set(re.findall(r'styles=([a-z_]+)"', report)))
    assert platforms and len(classes) > 1, "the committed report links no map"
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(500 * len(platforms), 2))
    points = pd.DataFrame({"image_id": [f"{name}/{i}" for name in platforms for i in range(500)],
                           "platform": np.repeat(platforms, 500), "x": xy[:, 0], "y": xy[:, 1],
                           "top3": [list(rng.permutation(classes)[:3]) for _ in range(len(xy))],
                           "top3_prob": [[0.6, 0.3, 0.1]] * len(xy)})
    details = pd.DataFrame({"image_id": [f"{platforms[0]}/0"], "prompt": ["a castle"], "thumb": [None]})
    explorer.write_explorer(root / "data/explore", points, details, classes)
    top1 = points.assign(top1=points["top3"].str[0]).groupby(["platform", "top1"]).size()
    (root / "top1.json").write_text(json.dumps({f"{p}/{s}": int(c) for (p, s), c in top1.items()}))
    return root, platforms


@pytest.fixture(scope="module")
def served(project):
    root, _ = project
    httpd = serve.server(root, port=0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield serve.url(httpd)
    httpd.shutdown()
    httpd.server_close()


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def test_only_the_report_and_the_explorer_are_served(served, project):
    base = served.removesuffix(serve.REPORT)
    _, platforms = project
    assert status(base) == 200  # redirected to the report
    assert status(served) == status(f"{base}data/explore/xy.f32") == status(f"{base}data/explore/index.html") == 200
    for path in ("params.yaml", "plots/../params.yaml", "data/sample/x.parquet", "data/%2e%2e/params.yaml"):
        assert status(base + path) == 404, path


def test_the_cli_prints_the_address_serves_and_stops_on_ctrl_c(project):
    root, _ = project
    proc = subprocess.Popen([sys.executable, "-m", "stylemap.cli", "serve", "--port", "0", "--project", str(root)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://\S+/plots/report\.html", line)
        assert url and status(url[0]) == 200, line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0 and "stopped" in proc.stdout.read()
    finally:
        proc.kill()


def test_serving_a_project_without_a_report_is_one_line_and_exit_2(tmp_path, capsys):
    from stylemap import cli

    assert cli.main(["serve", "--port", "0", "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `dvc repro` first" in err


@pytest.fixture
def report_page(served):
    """The served report in headless chromium (skipped without it)."""
    if not browser.CHROMIUM.exists():
        pytest.skip("chromium not installed at /usr/bin/chromium")
    with browser.chromium() as chromium:
        page = chromium.new_page(viewport={"width": 1200, "height": 800})
        page.goto(served)
        yield page
        page.close()


def test_the_reports_map_links_open_drawn_maps_and_from_disk_it_says_what_to_run(report_page, served, project):
    root, platforms = project
    page = report_page
    assert page.locator(".from-disk:visible").count() == 0  # over http the note stays hidden
    links = page.locator("a.map-link")
    assert links.count() == len(platforms)
    for i, name in enumerate(platforms):
        page.goto(served)
        page.locator("a.map-link").nth(i).click()
        page.wait_for_selector("body[data-points-drawn]", timeout=30_000)
        assert page.url.endswith(f"/data/explore/index.html?platform={name}")
        assert page.get_attribute("body", "data-points-drawn") == "500"
        assert page.get_attribute("html", "data-errors") == ""
        pixels = np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("L"))
        assert (pixels < 250).sum() > 500  # points painted on the white canvas
    page.goto((root / serve.REPORT).as_uri())
    notes = page.locator(".from-disk:visible")
    assert notes.count() == len(platforms) and "stylemap serve" in notes.first.text_content()
    assert page.locator("table").count() > 0 and page.locator("img[src^='data:image/png']").count() > 0


def test_a_styles_bar_opens_the_map_of_that_platform_showing_that_style_only(report_page, project):
    root, platforms = project
    page = report_page
    bars = page.locator(f'a.style-link[href*="?platform={platforms[0]}&"]')
    assert bars.count() > 1
    style = bars.nth(1).get_attribute("href").rpartition("=")[2]
    bars.nth(1).click()
    page.wait_for_selector("body[data-points-drawn]", timeout=30_000)
    count = json.loads((root / "top1.json").read_text()).get(f"{platforms[0]}/{style}", 0)
    assert page.get_attribute("body", "data-points-drawn") == str(count)
    assert page.text_content("#status") == f"{count} of {500 * len(platforms)} points shown"
