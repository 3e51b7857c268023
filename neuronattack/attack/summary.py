"""The one-page HTML summary of an attack (jinja2, every text escaped)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from neuronattack.attack.records import AttackRecord
from neuronattack.attack.run import why_map_path

_environment = Environment(loader=PackageLoader("neuronattack.attack", "templates"),
                           autoescape=select_autoescape(default=True, default_for_string=True))


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


_environment.filters["percent"] = percent


def render_summary(meta: dict, records: Sequence[AttackRecord], arms: dict[str, dict],
                   out_dir: Path) -> str:
    selections = {}
    for arm in arms:
        path = out_dir / f"selection-{arm}.json"
        if path.exists():
            selections[arm] = json.loads(path.read_text())
    from neuronattack.attack.explain import flip_words, read_cues

    flips = flip_words(out_dir)
    gallery = [{**r.to_json(), "top1": r.top1_success, "flip": flips.get(r.id),
                "why": why_link(out_dir, r.image)}
               for r in records if r.arm == "method" and r.image][:48]
    cues = read_cues(out_dir) or {"pairs": {}}
    return _environment.get_template("summary.html.j2").render(
        meta=meta, arms=arms, selections=selections, gallery=gallery,
        cues=next(iter(cues["pairs"].values()), {}).get("cues", []),
        meaningless=bool(meta.get("generator", {}).get("meaningless")),
    )


def why_link(out_dir: Path, image: str) -> str | None:
    """The image's why-map, relative like ``image``, when it was written."""
    why = why_map_path(image)
    return why.as_posix() if (Path(out_dir) / why).is_file() else None
