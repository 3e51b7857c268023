"""The one-page HTML summary of an attack (jinja2, every text escaped)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

_environment = Environment(loader=PackageLoader("neuronattack.attack", "templates"),
                           autoescape=select_autoescape(default=True, default_for_string=True))


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


_environment.filters["percent"] = percent


def render_summary(meta: dict, records: Sequence[dict], arms: dict[str, dict], out_dir: Path
                   ) -> str:
    selections = {}
    for arm in arms:
        path = out_dir / f"selection-{arm}.json"
        if path.exists():
            selections[arm] = json.loads(path.read_text())
    gallery = [r for r in records if r["arm"] == "method" and r.get("image")][:48]
    return _environment.get_template("summary.html.j2").render(
        meta=meta, arms=arms, selections=selections, gallery=gallery,
        meaningless=bool(meta.get("generator", {}).get("meaningless")),
    )
