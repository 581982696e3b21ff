"""The explorer in a real headless browser over http: every point drawn, style and platform filters, colouring by
platform, hover card, prompt search, a lasso selection counted and exported.

Playwright drives Debian's chromium at /usr/bin/chromium (installed by .ci/setup; skipped without it), and the
folders are served by python's http.server, as a user serves data/explore. The page records uncaught errors and
console.error calls into <html data-errors> and sets <body data-points-drawn> once it has drawn.
"""
from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stylemap.report import browser, explorer, regions
from stylemap.report.render import platform_colors, style_colors

pytestmark = pytest.mark.skipif(not browser.CHROMIUM.exists(), reason="chromium not installed at /usr/bin/chromium")
CLASSES = ["anime", "oil_painting", "photo", "pixel_art", "watercolor"]
COLORS = dict(zip(CLASSES, style_colors(CLASSES)))
N = 3000
PROMPT = 'a "quoted" <b>castle</b> & moon'


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two explorer folders (p: N points, broken: its x/y file truncated), served over http; the points frame."""
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(N, 2))
    xy[7] = (6, 6)  # alone in a corner, so hovering it finds no other point
    platforms = np.where(np.arange(N) < N // 3, "left", "right")  # two platforms: 1000 and 2000 points
    points = pd.DataFrame({"image_id": [f"{q}/{i}" for q, i in zip(platforms, range(N))], "platform": platforms,
                           "x": xy[:, 0], "y": xy[:, 1],
                           "top3": [list(rng.permutation(CLASSES)[:3]) for _ in range(N)],
                           "top3_prob": [[0.7, 0.2, 0.1]] * N})
    buf = io.BytesIO()
    Image.new("RGB", (200, 150), (30, 120, 200)).save(buf, format="PNG")
    details = pd.DataFrame({"image_id": ["left/7", "left/8", "left/9", "left/10"],
                            "prompt": [PROMPT, "Castle on a hill", "sand castle", "a river"],
                            "thumb": [explorer.thumbnail_jpeg(buf.getvalue()), None, None, None]})
    root = tmp_path_factory.mktemp("explore")
    explorer.write_explorer(root / "p", points, details, CLASSES)
    shutil.copytree(root / "p", root / "broken")
    (root / "broken/xy.f32").write_bytes((root / "p/xy.f32").read_bytes()[:100])
    with browser.serve(root) as url, browser.chromium() as chromium:
        yield url, root, chromium, points


def open_page(site, path: str):
    url, _, chromium, _ = site
    page = chromium.new_page(viewport={"width": 1200, "height": 800})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{url}/{path}")
    page.wait_for_selector("body[data-points-drawn]", timeout=30_000)
    return page, requests


def attribute(page, selector: str, name: str) -> str | None:
    return page.get_attribute(selector, name)


def colour_pixels(page) -> dict[str, int]:
    """Pixels of the map canvas painted exactly in each style's colour."""
    image = np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB")).reshape(-1, 3)
    packed = image[:, 0].astype(np.int64) << 16 | image[:, 1].astype(np.int64) << 8 | image[:, 2]
    return {style: int((packed == int(color[1:], 16)).sum()) for style, color in COLORS.items()}


def top1_count(points: pd.DataFrame, styles: set[str]) -> int:
    return sum(t[0] in styles for t in points["top3"])


def test_draws_every_point_without_errors_and_fetches_no_thumbnail(site):
    page, requests = open_page(site, "p/index.html")
    assert attribute(page, "html", "data-errors") == ""
    assert attribute(page, "body", "data-points-drawn") == str(N)
    assert page.text_content("#status") == f"{N} of {N} points shown"
    assert page.locator("#filters input[type=checkbox]").count() == len(CLASSES)
    swatches = page.eval_on_selector_all("#filters .swatch", "s => s.map(e => getComputedStyle(e).backgroundColor)")
    assert swatches == [f"rgb({int(c[1:3], 16)}, {int(c[3:5], 16)}, {int(c[5:7], 16)})" for c in COLORS.values()]
    assert all(count > 0 for count in colour_pixels(page).values())  # every style is on the canvas
    assert not [r for r in requests if "/thumbs/" in r]  # thumbnails load on hover only
    page.close()


def test_style_filter_hides_styles(site):
    points = site[3]
    page, _ = open_page(site, "p/index.html?styles=anime,photo")
    expected = top1_count(points, {"anime", "photo"})
    assert 0 < expected < N
    assert attribute(page, "body", "data-points-drawn") == str(expected)
    pixels = colour_pixels(page)
    assert pixels["anime"] > 0 and pixels["photo"] > 0
    assert pixels["oil_painting"] == pixels["pixel_art"] == pixels["watercolor"] == 0
    page.uncheck("#filters input[data-index='2']")  # photo, from the legend
    page.wait_for_function(f"document.body.dataset.pointsDrawn === '{top1_count(points, {'anime'})}'")
    assert colour_pixels(page)["photo"] == 0
    assert attribute(page, "html", "data-errors") == ""
    page.close()


def test_hover_shows_thumbnail_prompt_and_top3(site):
    points = site[3]
    page, requests = open_page(site, "p/index.html")
    x, y = page.evaluate("explorer.getScreenPosition(7)")
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_selector("body[data-card='7']", timeout=5_000)
    card = page.locator("#card")
    assert card.is_visible()
    text = card.inner_text()
    assert PROMPT in text and "&lt;b&gt;" in card.inner_html()  # shown as text, never as HTML
    for style, prob in zip(points.loc[7, "top3"], ("0.70", "0.20", "0.10")):
        assert f"{style} {prob}" in text
    assert "left · left/7" in text
    page.wait_for_function("document.querySelector('#card img').naturalWidth > 0")
    assert page.get_attribute("#card img", "src") == "thumbs/7.jpg"
    assert [r for r in requests if "/thumbs/" in r] == [f"{site[0]}/p/thumbs/7.jpg"]
    page.close()


def test_search_selects_points_whose_prompt_matches(site):
    page, _ = open_page(site, "p/index.html")
    page.fill("#search", "castle")
    page.wait_for_function("document.body.dataset.searchMatches === '3'")
    assert sorted(page.evaluate("explorer.get('selectedPoints')")) == [7, 8, 9]
    assert "3 of 4 prompts match" in page.text_content("#matches")
    page.close()
    page, _ = open_page(site, "p/index.html?q=RIVER")  # deep link, case-insensitive
    assert attribute(page, "body", "data-search-matches") == "1"
    assert page.evaluate("explorer.get('selectedPoints')") == [10]
    page.close()


@pytest.mark.parametrize("where", ["file", "broken"])
def test_a_page_without_its_data_says_so(site, where):
    url, root, chromium, _ = site
    page = chromium.new_page()
    page.goto((root / "p/index.html").as_uri() if where == "file" else f"{url}/broken/index.html")
    page.wait_for_selector("#status.error", timeout=10_000)
    message = page.text_content("#status")
    assert "could not be shown" in message and "stylemap serve" in message
    if where == "broken":
        assert "xy.f32 holds 25 values, expected 6000" in message
    assert "explorer:" in attribute(page, "html", "data-errors")
    assert attribute(page, "body", "data-points-drawn") is None
    page.close()


def test_pages_framed_by_the_shared_maps_bounds_put_a_point_at_one_place(site, tmp_path):
    """Two platforms' pages of one layout: the same coordinates land on the same pixel, whatever else each holds."""
    url, root, chromium, _ = site
    bounds = [-10.0, 10.0, -10.0, 10.0]
    for name, others in (("wide", [[-9.0, -9.0], [9.0, 9.0]]), ("narrow", [[1.0, 1.0], [2.0, 1.5]])):
        xy = np.array([[3.0, -4.0], *others])
        points = pd.DataFrame({"image_id": [f"{name}/{i}" for i in range(3)], "platform": name, "x": xy[:, 0], "y": xy[:, 1],
                               "top3": [CLASSES[:3]] * 3, "top3_prob": [[0.7, 0.2, 0.1]] * 3})
        explorer.write_explorer(root / name, points, points.iloc[:0].assign(prompt=[], thumb=[]), CLASSES, bounds)
    where = {}
    for name in ("wide", "narrow"):
        page, _ = open_page(site, f"{name}/index.html")
        where[name] = page.evaluate("window.explorer.getScreenPosition(0)")
        page.close()
    assert where["wide"] == pytest.approx(where["narrow"], abs=0.5)


def test_a_platforms_view_is_a_filter_of_the_one_map_and_colours_can_follow_platforms(site):
    points = site[3]
    page, _ = open_page(site, "p/index.html?platform=right")
    assert attribute(page, "body", "data-points-drawn") == "2000" and page.text_content("#heading") == "right"
    assert page.locator("#platforms input:checked").count() == 1
    page.close()
    page, _ = open_page(site, "p/index.html?color=platform")
    assert attribute(page, "body", "data-color-by") == "platform"
    image = np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB")).reshape(-1, 3)
    packed = image[:, 0].astype(np.int64) << 16 | image[:, 1].astype(np.int64) << 8 | image[:, 2]
    by_platform = [int((packed == int(c[1:], 16)).sum()) for c in platform_colors(2)]
    assert all(count > 0 for count in by_platform) and sum(colour_pixels(page).values()) == 0
    page.select_option("#colorby", "style")
    assert all(count > 0 for count in colour_pixels(page).values())
    page.close()


def normalised(points: pd.DataFrame) -> np.ndarray:
    """The points as the page draws them, framed by their own bounds (no shared bounds given)."""
    xy = points[["x", "y"]].to_numpy()
    return regions.drawing_square(xy, regions.bounds(xy))


def test_a_lasso_selection_is_counted_compared_and_exported(site, tmp_path):
    """A box lasso over the right half of the map: its size, style shares beside those of its platforms' shown
    points, its platform mix, and a CSV and a parquet file of exactly its rows."""
    points = site[3]
    inside = np.flatnonzero(normalised(points)[:, 0] > 0.2)
    page, _ = open_page(site, "p/index.html")
    page.evaluate("explorer.lassoSelect([[0.2, -1.2], [1.2, -1.2], [1.2, 1.2], [0.2, 1.2]], {isGl: true})")
    page.wait_for_selector("body[data-selected]:not([data-selected='0'])", timeout=5_000)
    assert attribute(page, "body", "data-selected") == str(len(inside))
    panel = page.inner_text("#selection")
    assert f"{len(inside)} selected" in panel
    top1 = points["top3"].map(lambda t: t[0])
    for style in CLASSES:
        share = (top1.iloc[inside] == style).mean()
        assert f"{style}\t{100 * share:.1f}%\t{100 * (top1 == style).mean():.1f}%" in panel  # both platforms are in it
    mix = points["platform"].iloc[inside].value_counts()
    assert all(f"{name}\t{count}" in panel for name, count in mix.items())
    with page.expect_download() as download:
        page.click("#export")
    path = tmp_path / "selection.csv"
    download.value.save_as(path)
    rows = pd.read_csv(path, keep_default_na=False)
    assert sorted(rows["image_id"]) == sorted(points["image_id"].iloc[inside])
    assert rows.columns.tolist() == ["image_id", "platform", "style_1", "prob_1", "style_2", "prob_2", "style_3",
                                     "prob_3", "prompt"]
    with page.expect_download() as download:
        page.click("#export-parquet")
    download.value.save_as(tmp_path / "selection.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "selection.parquet").astype(rows.dtypes), rows)
    by_id = points.set_index("image_id")
    for r in rows.head(50).itertuples():
        assert (r.platform, r.style_1, r.prob_1) == (by_id.at[r.image_id, "platform"], by_id.at[r.image_id, "top3"][0], round(178 / 255, 3))  # 0.7 as uint8
    page.close()


def test_contours_and_region_labels_are_drawn_and_follow_the_zoom(site):
    """Three clusters (tests/report/test_regions.py): three density contour levels, three broad regions named by
    style and prompt word zoomed out; zoomed in on one, the finer level's labels, and only those on screen."""
    from tests.report.test_regions import clustered

    url, root, chromium, _ = site
    xy, styles, prompts = clustered(per=200)
    styles = styles.replace("photography", "photo")  # this page's classes
    bounds = [-1.0, 1.0, -1.0, 1.0]
    others = {s: [o for o in CLASSES if o != s][:2] for s in set(styles)}
    points = pd.DataFrame({"image_id": [f"c/{i}" for i in range(len(xy))], "platform": "c", "x": xy[:, 0], "y": xy[:, 1],
                           "top3": [[s, *others[s]] for s in styles], "top3_prob": [[0.7, 0.2, 0.1]] * len(xy)})
    named = regions.named_regions(regions.drawing_square(xy, bounds), styles, prompts)
    thumb = explorer.thumbnail_jpeg(_png((200, 30, 30)))
    details = pd.DataFrame({"image_id": points["image_id"].iloc[::2], "prompt": "p", "thumb": thumb})  # every other
    explorer.write_explorer(root / "c", points, details, CLASSES, bounds, named)
    page, requests = open_page(site, "c/index.html")
    page.wait_for_function("[...document.querySelectorAll('#thumbs img')].every(i => i.naturalWidth > 0)")
    assert attribute(page, "body", "data-thumbs") == "3"  # zoomed out: one image at each region's peak
    paths = page.eval_on_selector_all("#regions path", "ps => ps.map(p => p.getAttribute('d').length)")
    assert len(paths) == len(regions.LEVELS) and all(length > 50 for length in paths)
    assert attribute(page, "body", "data-region-level") == "0"
    labels = page.eval_on_selector_all("#regions text", "ts => ts.map(t => t.textContent)")
    assert len(labels) == 3 and all(any(w in label for label in labels) for w in ("castle", "robot", "ocean"))
    assert "oil_painting 9" in next(label for label in labels if "castle" in label)
    page.evaluate(f"explorer.zoomToLocation([{-0.5 / 1.05}, {0.5 / 1.05}], 0.15)")
    page.wait_for_function("document.body.dataset.regionLevel === '2'", timeout=10_000)
    zoomed = page.eval_on_selector_all("#regions text", "ts => ts.map(t => t.textContent)")
    assert zoomed and all("castle" in label for label in zoomed)  # the other clusters' labels are off screen
    page.wait_for_function("Number(document.body.dataset.thumbs) > 3")
    shown = page.eval_on_selector_all("#thumbs img", "is => is.map(i => Number(i.dataset.point))")
    assert 3 < len(shown) <= 48 and all(points.at[i, "image_id"] in set(details["image_id"]) for i in shown)
    assert all(np.hypot(xy[i, 0] + 0.5, xy[i, 1] - 0.5) < 0.3 for i in shown)  # the castle cluster's own images
    fetched = [r for r in requests if "/thumbs/" in r]
    assert len(fetched) <= len(shown) + 3  # loaded when shown: never the other half of the details
    page.close()


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_the_style_filter_the_platform_filter_and_the_lasso_combine(site):
    points = site[3]
    top1 = points["top3"].map(lambda t: t[0])
    inside = normalised(points)[:, 0] > 0.2
    want = inside & (top1 == "anime").to_numpy() & (points["platform"] == "right").to_numpy()
    page, _ = open_page(site, "p/index.html?styles=anime&platform=right")
    page.evaluate("explorer.lassoSelect([[0.2, -1.2], [1.2, -1.2], [1.2, 1.2], [0.2, 1.2]], {isGl: true})")
    page.wait_for_selector("body[data-selected]:not([data-selected='0'])", timeout=5_000)
    assert attribute(page, "body", "data-selected") == str(int(want.sum()))
    panel = page.inner_text("#selection")
    assert f"anime\t100.0%\t100.0%" in panel and f"right\t{int(want.sum())}" in panel and "left" not in panel
    page.close()
