"""``fraud review report``: a static HTML report (index.html + PNG plots) of the ranked clusters."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from fraud.review import plots
from fraud.review.clusters import ClusterResult, quality


def write_report(result: ClusterResult, out_dir, top: int = 20, decisions: pd.DataFrame | None = None,
                 detail: int = 10) -> Path:
    """Write ``out_dir/index.html`` and its PNGs; returns the index path. ``detail``: clusters that
    get their own subgraph, timeline and map drawings."""
    from fraud.review.app import _templates

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "risk.png").write_bytes(plots.risk_png(result, top=top))
    (out / "scores.png").write_bytes(plots.scores_png(result))
    (out / "map.png").write_bytes(plots.map_png(result))
    mix = plots.scenario_mix_png(result, top=top)
    if mix is not None:
        (out / "scenarios.png").write_bytes(mix)
    detailed = result.clusters[:detail]
    for c in detailed:
        (out / f"{c.id}_graph.png").write_bytes(plots.subgraph_png(result, c))
        (out / f"{c.id}_timeline.png").write_bytes(plots.timeline_png(result, c))
        (out / f"{c.id}_map.png").write_bytes(plots.map_png(result, c))
    status = {}
    if decisions is not None and len(decisions):
        for r in decisions.to_dict("records"):
            if r.get("cluster_id") and r["decision"] in ("fraud", "legit"):
                status[r["cluster_id"]] = r["decision"]
    q = quality(result)
    html = _templates().get_template("report.html").render(
        clusters=result.clusters[:top], detailed=detailed, meta=result.meta, quality=q,
        has_mix=mix is not None, status=status,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
