"""The report's "asked versus shown" part of a platform section: a heat map of the style the prompt asks for
against the probe's top-1, and the styles ranked by follow rate (stages/asked.py computes both)."""
from __future__ import annotations

import html

import pandas as pd

CELL = 34  # pixels per heat-map cell
LABEL = 150  # pixels for the row labels (asked) and the rotated column labels (shown)


def heatmap_svg(table: pd.DataFrame) -> str:
    """Rows: asked style (`none` last); columns: shown style; a cell's shade is its share of the row's images."""
    counts = table.pivot_table(index="asked", columns="shown", values="images", aggfunc="sum", fill_value=0)
    rows = sorted(counts.index, key=lambda s: (s == "none", s))
    counts = counts.loc[rows]
    shares = counts.div(counts.sum(axis=1), axis=0)
    width, height = LABEL + CELL * len(counts.columns), LABEL + CELL * len(rows)
    parts = [f'<svg class="heatmap" width="{width}" height="{height}" role="img" '
             'aria-label="asked style by shown style">']
    for j, shown in enumerate(counts.columns):
        x = LABEL + CELL * j + CELL / 2
        parts.append(f'<text x="{x}" y="{LABEL - 6}" transform="rotate(-60 {x} {LABEL - 6})">{html.escape(shown)}</text>')
    for i, asked in enumerate(rows):
        y = LABEL + CELL * i
        parts.append(f'<text x="{LABEL - 6}" y="{y + CELL / 2 + 4}" text-anchor="end">{html.escape(asked)}</text>')
        for j, shown in enumerate(counts.columns):
            n, share = int(counts.loc[asked, shown]), float(shares.loc[asked, shown])
            parts.append(f'<rect x="{LABEL + CELL * j}" y="{y}" width="{CELL - 1}" height="{CELL - 1}" '
                         f'fill="rgb(33,102,172)" fill-opacity="{share:.3f}"><title>asked {html.escape(asked)}, '
                         f'shown {html.escape(shown)}: {n} ({share:.0%})</title></rect>')
            if n:
                parts.append(f'<text x="{LABEL + CELL * j + CELL / 2}" y="{y + CELL / 2 + 4}" text-anchor="middle" '
                             f'fill="{"white" if share > 0.5 else "black"}">{n}</text>')
    return "".join(parts) + "</svg>"


def _substitute(r) -> str:
    """The style most often shown instead, with its share of the images and that share's interval."""
    if not r.substitute:
        return "-"
    return f"{html.escape(r.substitute)} {r.substitute_share:.0%} [{r.substitute_lo:.0%}, {r.substitute_hi:.0%}]"


def ranked_table(rates: pd.DataFrame) -> str:
    """Rated styles by adjusted follow rate, the raw rate beside it; styles too rarely asked for, listed after."""
    rated = rates[rates["rated"].astype(bool)].sort_values("adjusted", ascending=False)
    rows = "".join(
        f"<tr><td>{html.escape(r.style)}</td><td>{r.prompts}</td>"
        f"<td>{r.adjusted:.0%} [{r.adjusted_lo:.0%}, {r.adjusted_hi:.0%}]</td>"
        f"<td>{r.raw:.0%} [{r.raw_lo:.0%}, {r.raw_hi:.0%}]</td>"
        f"<td>{_substitute(r)}</td></tr>"
        for r in rated.itertuples())
    few = rates[~rates["rated"].astype(bool)]
    level = f"{rates['confidence'].iloc[0]:.0%}" if len(rates) else ""
    table = ("<table><tr><th>asked style</th><th>prompts</th><th>followed, adjusted</th><th>followed, raw</th>"
             f"<th>most often shown instead</th></tr>{rows}</table>"
             f'<p class="muted">{level} bootstrap intervals. Adjusted: the probe\'s validation confusion matrix '
             "taken out (ACC), so its own errors do not count as the generator's.</p>" if rows
             else "<p>No style is asked for by enough prompts for a follow rate.</p>")
    if len(few):
        table += ('<p class="muted">Too few prompts for a rate: '
                  + ", ".join(f"{html.escape(r.style)} ({r.prompts})" for r in few.itertuples()) + "</p>")
    return table


def asked_section(table: pd.DataFrame, rates: pd.DataFrame) -> str:
    """One platform's heat map and ranked follow rates; nothing where no image was predicted."""
    if table.empty:
        return ""
    named = table.loc[table["asked"] != "none", "images"].sum() > 0
    return ("<h3>what the prompt asked for against what the image shows (probe's top-1)</h3>"
            + (heatmap_svg(table) if named else "<p>No prompt names a style the taxonomy knows.</p>")
            + ranked_table(rates))
