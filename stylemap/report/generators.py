"""The report's "styles per generating model" part of a platform section: the models' shares side by side, and
the styles whose difference between two models has an interval excluding 0 (quantify.by_generator)."""
from __future__ import annotations

import html

import pandas as pd


def generators_section(shares: pd.DataFrame, differences: pd.DataFrame) -> str:
    """Nothing where the platform records no model with enough images."""
    if shares.empty:
        return ""
    models = list(dict.fromkeys(shares["generator"]))
    images = shares.drop_duplicates("generator").set_index("generator")["images"]
    cell = shares.set_index(["style", "generator"])
    head = "".join(f"<th>{html.escape(m)} ({images[m]} images)</th>" for m in models)
    rows = "".join(
        f"<tr><td>{html.escape(style)}</td>" + "".join(
            f"<td>{cell.loc[(style, m), 'share']:.1%} [{cell.loc[(style, m), 'lo']:.1%}, {cell.loc[(style, m), 'hi']:.1%}]"
            "</td>" for m in models) + "</tr>"
        for style in dict.fromkeys(shares["style"]))
    found = differences[differences["significant"].astype(bool)].sort_values("difference", key=abs, ascending=False)
    listed = "".join(f"<li>{html.escape(r.generator_a)} − {html.escape(r.generator_b)}: {html.escape(r.style)} "
                     f"{r.difference:+.1%} [{r.lo:+.1%}, {r.hi:+.1%}]</li>" for r in found.itertuples())
    method, level = shares["method"].iloc[0], shares["confidence"].iloc[0]
    return (f"<h3>styles per generating model: {html.escape(method)} with its {level:.0%} interval</h3>"
            f"<table><tr><th>style</th>{head}</tr>{rows}</table>"
            + (f"<p>Differences whose interval excludes 0:</p><ul>{listed}</ul>" if listed
               else "<p>No style's difference between models has an interval excluding 0.</p>"
               if len(models) > 1 else ""))
