"""The report page: adjusted shares beside classify-and-count, shift warnings, significant differences only, audit."""
from __future__ import annotations

import pandas as pd

from stylemap.report.page import Inputs, report_html

CLASSES = ["anime", "photo", "sketch"]


def inputs(**changes) -> Inputs:
    prevalence = pd.concat([
        pd.DataFrame({"platform": pl, "method": m, "default": m == "acc", "style": CLASSES, "share": s,
                      "lo": [v - 0.05 for v in s], "hi": [v + 0.05 for v in s], "confidence": 0.95})
        for pl in ("a", "b") for m, s in (("cc", [0.2, 0.7, 0.1]), ("acc", [0.5, 0.4, 0.1]))])
    base = dict(
        platforms=["a", "b", "gone"], classes=CLASSES,
        summaries={f"{pl}.{k}": v for pl in ("a", "b") for k, v in
                   (("absent", False), ("kept", 10), ("mean_confidence", 0.8), ("mean_ambiguity", 0.3))},
        ambiguity=pd.DataFrame({"platform": ["a", "b"], "bin": [0.0, 0.0], "count": [10, 10], "share": [1.0, 1.0]}),
        prevalence=prevalence,
        differences=pd.DataFrame({"platform_a": "a", "platform_b": "b", "style": CLASSES, "difference": [0.3, -0.2, 0.0],
                                  "lo": [0.1, -0.4, -0.1], "hi": [0.5, 0.01, 0.1], "significant": [True, False, False],
                                  "confidence": 0.9}),
        shift=pd.DataFrame({"platform": ["a", "b"], "mmd2": [0.01, 0.5], "threshold": [0.06, 0.06],
                            "baseline_mmd2": [0.02, 0.02], "shifted": [False, True]}),
        trends=pd.DataFrame({"platform": "a", "month": ["2022-08"] * 3 + ["2022-09"] * 3, "style": CLASSES * 2,
                             "share": [0.5, 0.4, 0.1, 0.2, 0.6, 0.2], "images": [40] * 3 + [35] * 3}),
        calibration={"temperature": 2.5, "val_images": 40, "ece": 0.3, "ece_calibrated": 0.08},
        review=pd.DataFrame({"image_id": ["a/1"], "given": ["anime"], "suggested": ["photo"], "quality": [0.01],
                             "thumb": ["data:image/jpeg;base64,AAAA"]}),
        noise=pd.DataFrame({"class": CLASSES, "noise_rate": [0.25, 0.0, 0.5]}),
        gold_scores=pd.DataFrame(columns=["encoder", "metric", "value", "lo", "hi", "images"]),
        gold_prevalence=pd.DataFrame(columns=["method", "style", "estimated", "true", "images"]), gold_source="",
        generators=pd.DataFrame({"platform": "a", "generator": ["sd-1"] * 3 + ["sdxl"] * 3, "method": "acc",
                                 "style": CLASSES * 2, "share": [0.5, 0.3, 0.2, 0.1, 0.6, 0.3],
                                 "lo": [0.4, 0.2, 0.1, 0.05, 0.5, 0.2], "hi": [0.6, 0.4, 0.3, 0.2, 0.7, 0.4],
                                 "images": [40] * 3 + [35] * 3, "confidence": 0.9}),
        generator_differences=pd.DataFrame({"platform": "a", "generator_a": "sd-1", "generator_b": "sdxl",
                                            "style": CLASSES, "difference": [0.4, -0.3, -0.1],
                                            "lo": [0.3, -0.45, -0.2], "hi": [0.5, -0.15, 0.05],
                                            "significant": [True, True, False], "confidence": 0.9}),
        asked_shown=pd.DataFrame({"platform": "a", "asked": ["anime", "anime", "none", "photo"],
                                  "shown": ["anime", "photo", "photo", "photo"], "images": [12, 3, 20, 2]}),
        follow_rates=pd.DataFrame({"platform": "a", "style": ["anime", "photo"], "prompts": [15, 2],
                                   "rated": [True, False], "raw": [0.8, None], "raw_lo": [0.6, None],
                                   "raw_hi": [0.95, None], "adjusted": [0.9, None], "adjusted_lo": [0.7, None],
                                   "adjusted_hi": [1.0, None], "substitute": ["photo", ""],
                                   "substitute_share": [0.2, 0.0], "substitute_lo": [0.05, None],
                                   "substitute_hi": [0.4, None], "confidence": 0.95}),
        pngs={}, shareable={"a", "b"}, note="<note>")
    return Inputs(**{**base, **changes})


def section(page: str, platform: str) -> str:
    return page.split(f"<h2>{platform}</h2>")[1].split("</section>")[0]


def test_shares_show_the_adjusted_estimate_interval_and_cc():
    page = report_html(inputs())
    a = section(page, "a")
    assert "style prevalence: acc" in a and "50.0% [45.0%, 55.0%] · CC 20.0%" in a
    assert a.index(">anime<") < a.index(">photo<")  # sorted by adjusted share, not by CC
    assert "absent" in section(page, "gone") and "&lt;note&gt;" in page


def test_only_the_shifted_platform_carries_the_warning():
    page = report_html(inputs())
    assert 'class="warning"' not in section(page, "a") and "1.0×" not in section(page, "a")
    assert 'class="warning"' in section(page, "b") and "25.0× the validation split" in section(page, "b")
    assert page.count('class="warning"') == 1 and "<b>shifted</b>" in page


def test_differences_list_only_styles_whose_interval_excludes_zero():
    diff = report_html(inputs()).split("Differences between platforms")[1].split("Label audit")[0]
    assert "a − b: 1 of 3 styles differ" in diff and "+30.0%" in diff and "[+10.0%, +50.0%]" in diff
    assert "<th>90% interval</th>" in diff  # the level quantify used, not a fixed 95%
    assert "photo" not in diff and "sketch" not in diff
    nothing = inputs(differences=inputs().differences.assign(significant=False))
    assert "a − b: 0 of 3 styles differ" in report_html(nothing) and "No style's interval excludes 0" in report_html(nothing)


def test_audit_shows_noise_rates_and_review_thumbnails():
    audit = report_html(inputs()).split("Label audit (cleanlab)")[1]
    assert "<td>sketch</td><td>50.0%</td>" in audit
    assert '<img src="data:image/jpeg;base64,AAAA" alt="a/1">' in audit and "<td>photo</td><td>0.01</td>" in audit
    empty = inputs(review=inputs().review.iloc[:0])
    assert "No label issue found." in report_html(empty)


def test_calibration_line_states_both_eces():
    assert "ECE 0.300 raw, 0.080 calibrated" in report_html(inputs())


def test_map_png_is_inlined_with_a_link_to_the_explorer(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = report_html(inputs(pngs={"a": png}))
    assert "data:image/png;base64,iVBORw0KGgpmYWtl" in section(page, "a")
    assert 'class="map-link" href="../data/explore/index.html?platform=a"' in section(page, "a")
    assert "no map (too few images)" in section(page, "b") and "platform=b" not in section(page, "b")


def test_trends_draw_one_line_per_style_where_two_months_exist():
    page = report_html(inputs())
    a, b = section(page, "a"), section(page, "b")
    assert "style shares by month (up to 60%; images per month 2022-08: 40, 2022-09: 35" in a
    assert a.count("<polyline") == 3 and ">2022-09<" in a
    assert "by month" not in b  # no dated images: no trend chart


def test_a_platform_that_may_not_be_shared_gets_no_explorer_link(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    a = section(report_html(inputs(pngs={"a": png}, shareable={"b"})), "a")
    assert "data:image/png;base64," in a and "platform=a" not in a and "terms forbid sharing per-image data" in a


def test_the_gold_section_shows_each_encoders_scores_and_the_default_methods_shares_against_the_truth():
    assert "Scored against the gold" not in report_html(inputs())  # no gold source: no section
    scores = pd.DataFrame([{"encoder": e, "metric": m, "value": v, "lo": v - 0.1, "hi": v + 0.1, "images": 20}
                           for e, base in (("cnn", 0.5), ("style_stats", 0.3))
                           for m, v in (("top1", base), ("top3", base + 0.2), ("macro_f1", base - 0.1),
                                        ("shared_top1", base + 0.1), ("shared_macro_f1", base))])
    shares = pd.DataFrame([{"method": m, "style": c, "estimated": est, "true": t, "images": 20}
                           for m, ests in (("cc", [0.6, 0.3, 0.1]), ("acc", [0.45, 0.45, 0.1]))
                           for c, est, t in zip(CLASSES, ests, [0.5, 0.5, 0.0])])
    page = report_html(inputs(gold_scores=scores, gold_prevalence=shares, gold_source="horde"))
    gold = page.split("Scored against the gold")[1].split("<main>")[0]
    assert "(horde: 20 hand-checked images)" in gold
    assert ("<td>cnn</td><td>0.500 [0.400, 0.600]</td><td>0.700 [0.600, 0.800]</td><td>0.400 [0.300, 0.500]</td>"
            "<td>0.600 [0.500, 0.700]</td><td>0.500 [0.400, 0.600]</td></tr>") in gold
    assert "<td>style_stats</td><td>0.300 [0.200, 0.400]</td>" in gold
    assert "shares of the gold images: acc against the truth" in gold  # the platforms' default method
    assert "<td>anime</td><td>50.0%</td><td>45.0%</td>" in gold and "<td>sketch</td><td>0.0%</td><td>10.0%</td>" in gold
    assert "<td>cc</td><td>0.133</td><td>0.200</td>" in gold  # errors 0.1, 0.2, 0.1: mean 0.133, worst 0.2
    assert "<td>acc</td><td>0.067</td><td>0.100</td>" in gold


def test_asked_versus_shown_draws_the_heat_map_and_ranks_the_rated_styles():
    a, b = section(report_html(inputs()), "a"), section(report_html(inputs()), "b")
    heatmap = a.split('<svg class="heatmap"')[1].split("</svg>")[0]
    assert heatmap.count("<rect") == 3 * 2  # asked anime, photo, none x shown anime, photo
    assert "<title>asked anime, shown photo: 3 (20%)</title>" in heatmap and 'fill-opacity="0.800"' in heatmap
    assert heatmap.index(">anime<") < heatmap.index(">photo<") < heatmap.index(">none<")  # none is the last row
    assert "<td>anime</td><td>15</td><td>90% [70%, 100%]</td><td>80% [60%, 95%]</td><td>photo 20% [5%, 40%]</td>" in a
    assert "Too few prompts for a rate: photo (2)" in a
    assert "asked for against what the image shows" not in b  # nothing predicted there: no section


def test_styles_per_generating_model_stand_side_by_side_with_the_differences_that_exclude_zero():
    a, b = section(report_html(inputs()), "a"), section(report_html(inputs()), "b")
    part = a.split("styles per generating model: acc with its 90% interval")[1]
    assert "<th>sd-1 (40 images)</th><th>sdxl (35 images)</th>" in part
    assert f"<tr><td>{CLASSES[0]}</td><td>50.0% [40.0%, 60.0%]</td><td>10.0% [5.0%, 20.0%]</td></tr>" in part
    listed = part.split("<ul>")[1].split("</ul>")[0]
    assert listed.count("<li>") == 2 and listed.index(f"{CLASSES[0]} +40.0%") < listed.index(f"{CLASSES[1]} -30.0%")
    assert CLASSES[2] not in listed and "per generating model" not in b
