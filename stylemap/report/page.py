"""The one-page platform report: adjusted style shares with intervals, shift warnings, what prompts asked for
against what images show, differences, the label audit.

Everything is inline (SVG charts, PNG maps and review thumbnails as data URIs), so the page is one file
that opens anywhere. The numbers come from data outputs only (predict, quantify, evaluate's calibration,
audit), never from metrics files, so the page is exactly what the data says.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from stylemap.report.asked import asked_section
from stylemap.report.generators import generators_section
from stylemap.report.render import TEMPLATES, style_colors

BAR = 200  # pixels for a share of 100 %


@dataclass(frozen=True)
class Inputs:
    """What the report stage read, per platform where it says so."""

    platforms: list[str]
    classes: list[str]
    summaries: dict  # predict's flat per-platform summary (kept, mean_confidence, mean_ambiguity, absent)
    ambiguity: pd.DataFrame  # platform, bin, count, share
    prevalence: pd.DataFrame  # quantify: platform, method, default, style, share, lo, hi
    differences: pd.DataFrame  # quantify: platform_a, platform_b, style, difference, lo, hi, significant
    shift: pd.DataFrame  # quantify: platform, mmd2, threshold, baseline_mmd2, shifted, ...
    trends: pd.DataFrame  # quantify: platform, month, style, share, images
    calibration: dict  # evaluate: temperature, ece, ece_calibrated
    review: pd.DataFrame  # audit: image_id, given, suggested, quality, thumb (data URI or None)
    noise: pd.DataFrame  # audit: class, noise_rate
    gold_scores: pd.DataFrame  # evaluate: encoder, metric, value, lo, hi, images
    gold_prevalence: pd.DataFrame  # quantify: method, style, estimated, true, images
    generators: pd.DataFrame  # quantify: platform, generator, method, style, share, lo, hi, images, confidence
    generator_differences: pd.DataFrame  # quantify: platform, generator_a, generator_b, style, difference, lo, hi, ...
    asked_shown: pd.DataFrame  # asked: platform, asked, shown, images
    follow_rates: pd.DataFrame  # asked: platform, style, prompts, rated, raw/adjusted with lo/hi, substitute, ...
    gold_source: str
    pngs: dict[str, Path]
    shareable: set[str]  # platforms whose per-image data may be shared (`redistribute`): they get an explorer link
    note: str


def esc(value) -> str:
    return html.escape(str(value))


def shares_svg(adjusted: pd.DataFrame, cc: pd.DataFrame, colors: dict[str, str], explorer: str | None = None) -> str:
    """Adjusted share per style as a bar with its interval as a whisker, and classify-and-count as a black tick.
    With the platform's `explorer` link, a style's row links to the map showing that style of that platform only."""
    cc_share = dict(zip(cc["style"], cc["share"]))
    rows = []
    for k, r in enumerate(adjusted.sort_values("share", ascending=False).itertuples()):
        y, c = 4 + k * 18, cc_share.get(r.style, 0.0)
        row = (f'<text x="0" y="{y + 11}" font-size="11">{esc(r.style)}</text>'
               f'<rect x="120" y="{y}" width="{r.share * BAR:.1f}" height="13" fill="{colors.get(r.style, "#888")}"/>'
               f'<line x1="{120 + r.lo * BAR:.1f}" x2="{120 + r.hi * BAR:.1f}" y1="{y + 6.5}" y2="{y + 6.5}" stroke="#222"/>'
               f'<rect x="{119 + c * BAR:.1f}" y="{y - 1}" width="2" height="15" fill="#000"/>'
               f'<text x="{126 + BAR}" y="{y + 11}" font-size="10">{r.share:.1%} [{r.lo:.1%}, {r.hi:.1%}] · CC {c:.1%}</text>')
        if explorer:
            row = (f'<a class="style-link" href="{explorer}&amp;styles={quote(r.style)}"><title>{esc(r.style)} on the '
                   f'map</title><rect x="0" y="{y - 2}" width="500" height="17" fill="transparent"/>{row}</a>')  # whole row
        rows.append(row)
    return f'<svg width="500" height="{8 + 18 * len(rows)}">{"".join(rows)}</svg>'


def histogram_svg(hist: pd.DataFrame) -> str:
    """Columns of the ambiguity histogram (bin, share) over [0, 1]."""
    peak = max(float(hist["share"].max()), 1e-9)
    width = 300 / max(len(hist), 1)
    cols = [f'<rect x="{k * width:.1f}" y="{100 - 95 * s / peak:.1f}" width="{width - 1:.1f}" height="{95 * s / peak:.1f}" '
            f'fill="#5b7fa6"><title>ambiguity {b:.2f}+: {s:.1%}</title></rect>'
            for k, (b, s) in enumerate(zip(hist["bin"], hist["share"]))]
    axis = ('<text x="0" y="114" font-size="10">0 (one clear style)</text>'
            '<text x="300" y="114" font-size="10" text-anchor="end">1 (blend)</text>')
    return f'<svg width="300" height="118">{"".join(cols)}{axis}</svg>'


def trends_svg(trend: pd.DataFrame, colors: dict[str, str]) -> str:
    """One line per style over the months (at least two), shares on a 0-max axis; months label the x axis."""
    months = sorted(trend["month"].unique())
    if len(months) < 2:
        return ""
    top = max(float(trend["share"].max()), 1e-9)
    x = {m: 30 + k * 400 / (len(months) - 1) for k, m in enumerate(months)}
    lines = []
    for style, rows in trend.groupby("style", sort=True):
        points = " ".join(f"{x[m]:.1f},{110 - 100 * v / top:.1f}" for m, v in zip(rows["month"], rows["share"]))
        lines.append(f'<polyline points="{points}" fill="none" stroke="{colors.get(style, "#888")}" stroke-width="2">'
                     f"<title>{esc(style)}</title></polyline>")
    labels = "".join(f'<text x="{x[m]:.1f}" y="126" font-size="10" text-anchor="middle">{esc(m)}</text>' for m in months)
    images = trend.drop_duplicates("month").set_index("month")["images"]
    note = ", ".join(f"{m}: {images[m]}" for m in months)
    return (f"<h3>style shares by month (up to {top:.0%}; images per month {esc(note)}; no intervals)</h3>"
            f'<svg width="460" height="132"><text x="0" y="14" font-size="10">{top:.0%}</text>'
            f'<text x="0" y="110" font-size="10">0</text>{"".join(lines)}{labels}</svg>')


def shift_warning(row: pd.Series | None) -> str:
    """A visible warning when the platform's images lie far from the training images; else the measured distance."""
    if row is None:
        return '<p class="muted">shift not measured: fewer than 2 usable images outside the training set</p>'
    ratio = row["mmd2"] / row["baseline_mmd2"] if row["baseline_mmd2"] > 0 else float("inf")
    detail = (f"MMD² to the training images {row['mmd2']:.3f} = {ratio:.1f}× the validation split's "
              f"{row['baseline_mmd2']:.3f} (warning above {row['threshold']:.3f})")
    if not row["shifted"]:
        return f'<p class="muted">in distribution: {detail}</p>'
    return ('<p class="warning"><b>Warning: these images lie far from what the probe was trained on.</b> '
            f"{detail}. The probe's shares here, adjusted or not, are unreliable.</p>")


def platform_section(platform: str, d: Inputs, colors: dict[str, str]) -> str:
    name = esc(platform)
    s = d.summaries
    if s.get(f"{platform}.absent", True):
        return f"<section><h2>{name}</h2><p>absent: the source is not on disk, nothing predicted.</p></section>"
    mine = d.prevalence[d.prevalence["platform"] == platform]
    adjusted, cc = mine[mine["default"]], mine[mine["method"] == "cc"]
    shift = d.shift[d.shift["platform"] == platform]
    png = d.pngs.get(platform)
    explorer = f"../data/explore/index.html?platform={quote(platform)}" if platform in d.shareable and png else None
    link = (f'<p><a class="map-link" href="{explorer}">interactive map</a> <span class="from-disk" '
            'hidden>(this page was opened from disk, where the map cannot load its data: run <code>stylemap serve</code> '
            'in the project and open the address it prints)</span></p>' if platform in d.shareable
            else "<p>no interactive map: this corpus's terms forbid sharing per-image data</p>")
    image = (f'<img src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}" alt="UMAP of {name}">{link}'
             if png else "<p>no map (too few images)</p>")
    asked = asked_section(d.asked_shown[d.asked_shown["platform"] == platform],
                          d.follow_rates[d.follow_rates["platform"] == platform])
    models = generators_section(d.generators[d.generators["platform"] == platform],
                                d.generator_differences[d.generator_differences["platform"] == platform])
    method = adjusted["method"].iloc[0] if len(adjusted) else "-"
    level = adjusted["confidence"].iloc[0] if len(adjusted) else float("nan")
    return (f"<section><h2>{name}</h2>{shift_warning(shift.iloc[0] if len(shift) else None)}"
            f"<p>{s[f'{platform}.kept']} images &middot; mean confidence {s[f'{platform}.mean_confidence']:.3f}"
            f" &middot; mean ambiguity {s[f'{platform}.mean_ambiguity']:.3f}</p>"
            f"<h3>style prevalence: {esc(method)} with its {level:.0%} interval; black tick = classify-and-count</h3>"
            f"{shares_svg(adjusted, cc, colors, explorer)}"
            f"{trends_svg(d.trends[d.trends['platform'] == platform], colors)}"
            f"{models}{asked}"
            f"<h3>style ambiguity (normalised entropy)</h3>{histogram_svg(d.ambiguity[d.ambiguity['platform'] == platform])}"
            f"<h3>UMAP</h3>{image}</section>")


def differences_table(diff: pd.DataFrame) -> str:
    """Per pair of platforms, the styles whose difference in share has an interval excluding 0."""
    if diff.empty:
        return "<p>Fewer than two platforms present: nothing to compare.</p>"
    parts = []
    for (a, b), pair in diff.groupby(["platform_a", "platform_b"], sort=False):
        found = pair[pair["significant"]].sort_values("difference", key=abs, ascending=False)
        rows = "".join(f"<tr><td>{esc(r.style)}</td><td>{r.difference:+.1%}</td><td>[{r.lo:+.1%}, {r.hi:+.1%}]</td></tr>"
                       for r in found.itertuples())
        level = f"{pair['confidence'].iloc[0]:.0%}"
        parts.append(f"<h3>{esc(a)} − {esc(b)}: {len(found)} of {len(pair)} styles differ</h3>"
                     + (f"<table><tr><th>style</th><th>difference</th><th>{level} interval</th></tr>{rows}</table>" if rows
                        else "<p>No style's interval excludes 0.</p>"))
    return "".join(parts)


def thumb_img(uri: str | None, image_id: str) -> str:
    return f'<img src="{uri}" alt="{esc(image_id)}">' if uri else "-"


def audit_section(review: pd.DataFrame, noise: pd.DataFrame) -> str:
    """cleanlab's estimated noise rate per class, and the most suspect training labels with thumbnails."""
    rates = "".join(f"<tr><td>{esc(r['class'])}</td><td>{r['noise_rate']:.1%}</td></tr>" for _, r in noise.iterrows())
    cards = "".join(f"<tr><td>{thumb_img(r.thumb, r.image_id)}</td><td>{esc(r.image_id)}</td><td>{esc(r.given)}</td>"
                    f"<td>{esc(r.suggested)}</td><td>{r.quality:.2g}</td></tr>" for r in review.itertuples())
    return ("<h2>Label audit (cleanlab)</h2><p>Estimated share of each class's training labels that are wrong, from "
            "out-of-fold probe probabilities.</p>"
            f"<table><tr><th>class</th><th>noise rate</th></tr>{rates}</table>"
            "<h3>Most suspect training labels</h3>"
            + ('<table class="review"><tr><th></th><th>image</th><th>given</th><th>suggested</th><th>label quality</th></tr>'
               f"{cards}</table>"
               if cards else "<p>No label issue found.</p>"))


def summary_table(d: Inputs) -> str:
    """One row per present platform: the numbers to compare first."""
    rows = []
    for platform in d.platforms:
        if d.summaries.get(f"{platform}.absent", True):
            continue
        mine = d.prevalence[(d.prevalence["platform"] == platform) & d.prevalence["default"]]
        top = mine.loc[mine["share"].idxmax()] if len(mine) else None
        shift = d.shift[d.shift["platform"] == platform]
        flag = "<b>shifted</b>" if len(shift) and shift["shifted"].iloc[0] else "ok" if len(shift) else "-"
        rows.append(f"<tr><td>{esc(platform)}</td><td>{d.summaries[f'{platform}.kept']}</td>"
                    f"<td>{esc(top['style']) + f' {top.share:.1%} [{top.lo:.1%}, {top.hi:.1%}]' if top is not None else '-'}</td>"
                    f"<td>{d.summaries[f'{platform}.mean_ambiguity']:.3f}</td><td>{flag}</td></tr>")
    return ("<table><tr><th>platform</th><th>images</th><th>most common style (adjusted)</th><th>mean ambiguity</th>"
            f"<th>shift</th></tr>{''.join(rows)}</table>")


def gold_section(d: Inputs) -> str:
    """The chain scored on real images: each encoder's probe on the gold images (never trained on), and the
    default method's shares of those images against their true shares."""
    if d.gold_scores.empty:
        return ""
    scores = d.gold_scores.pivot(index="encoder", columns="metric")
    rows = "".join(f"<tr><td>{esc(e)}</td>" + "".join(
        f"<td>{scores.loc[e, ('value', m)]:.3f} [{scores.loc[e, ('lo', m)]:.3f}, {scores.loc[e, ('hi', m)]:.3f}]</td>"
        for m in ("top1", "top3", "macro_f1", "shared_top1", "shared_macro_f1")) + "</tr>" for e in scores.index)
    default = d.prevalence.loc[d.prevalence["default"], "method"]
    method = default.iloc[0] if len(default) else "cc"
    shares = d.gold_prevalence[d.gold_prevalence["method"] == method].sort_values("true", ascending=False)
    errors = (d.gold_prevalence.assign(error=(d.gold_prevalence["estimated"] - d.gold_prevalence["true"]).abs())
              .groupby("method", sort=False)["error"].agg(["mean", "max"]))
    share_rows = "".join(f"<tr><td>{esc(r.style)}</td><td>{r.true:.1%}</td><td>{r.estimated:.1%}</td></tr>"
                         for r in shares.itertuples())
    error_rows = "".join(f"<tr><td>{esc(m)}</td><td>{r['mean']:.3f}</td><td>{r['max']:.3f}</td></tr>"
                         for m, r in errors.iterrows())
    images = int(d.gold_scores["images"].iloc[0])
    return (f"<h2>Scored against the gold ({esc(d.gold_source)}: {images} hand-checked images)</h2>"
            "<p>No preset with a gold image trained the probe; the gold is never a training label. A gold class the "
            "probe does not know counts as a miss. <i>Among the gold's classes</i>: only the probe classes the gold "
            "also has may win (a theme such as gothic_horror is no answer to which medium). Intervals: bootstrap over "
            "images.</p><table><tr><th>probe on</th><th>top-1</th><th>top-3</th><th>macro-F1</th>"
            "<th>top-1 among the gold's classes</th><th>macro-F1 among them</th></tr>" + rows + "</table>"
            f"<h3>shares of the gold images: {esc(method)} against the truth</h3>"
            "<table><tr><th>style</th><th>true</th><th>estimated</th></tr>" + share_rows + "</table>"
            "<h3>absolute error of the shares, per method</h3>"
            "<table><tr><th>method</th><th>mean over styles</th><th>worst style</th></tr>" + error_rows + "</table>")


def report_html(d: Inputs) -> str:
    """Summary table, calibration, one column per platform, the differences between platforms, the label audit."""
    colors = dict(zip(d.classes, style_colors(d.classes)))
    c = d.calibration
    calibration = (f"Probabilities are temperature-scaled (T = {c['temperature']:.2f}, fitted on {c['val_images']} "
                   f"validation images): ECE {c['ece']:.3f} raw, {c['ece_calibrated']:.3f} calibrated (held-out halves).")
    page = (TEMPLATES / "report.html").read_text()
    return (page.replace("__NOTE__", esc(d.note)).replace("__CALIBRATION__", esc(calibration))
            .replace("__SUMMARY__", summary_table(d)).replace("__GOLD__", gold_section(d))
            .replace("__PLATFORMS__", "".join(platform_section(p, d, colors) for p in d.platforms))
            .replace("__DIFFERENCES__", differences_table(d.differences))
            .replace("__AUDIT__", audit_section(d.review, d.noise)))
