"""The report of a run: one static HTML page (jinja2, every text escaped) to look at, not JSON.

What made the images, a loud banner when the generator has random weights, success per pair and
overall (every arm, 95% Wilson intervals, so the method is read against its baselines), the
method's neurons and words, galleries of fooled and not-fooled method images, and transfer: how
often each judge model also takes the images for the target. Thumbnails are the run's own images,
linked by relative path, so the page works wherever the run folder is copied with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

from neuronattack.attack.explain import flip_words, read_cues
from neuronattack.attack.records import AttackRecord
from neuronattack.attack.run import summarize, why_map_path
from neuronattack.attack.stats import rate_summary
from neuronattack.attack.summary import percent
from neuronattack.campaign.export import (
    Run,
    arm_rank,
    class_table,
    distinct,
    load_run,
    meaningless,
    provenance,
)

PER_PAIR = 12  # images per gallery: enough to judge the images, small enough to load quickly

_environment = Environment(loader=PackageLoader("neuronattack.campaign", "templates"),
                           autoescape=select_autoescape(default=True, default_for_string=True))
_environment.filters["percent"] = percent


def write_report(run_path: Path, out: Path | None = None, per_pair: int = PER_PAIR) -> Path:
    """Render ``report.html`` (default: in the run folder) and return its path."""
    run = load_run(run_path)
    out = Path(out) if out is not None else run.base / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    html = _environment.get_template("report.html.j2").render(
        **report_context(run, out.parent, per_pair))
    out.write_text(html, encoding="utf-8")
    return out


def report_context(run: Run, page_dir: Path, per_pair: int) -> dict:
    """Everything the template shows, computed here so the template only lays it out."""
    records = run.records
    classes = class_table(records, run.units.values())
    pairs = distinct(r.pair for r in records)
    first = {pair: next(r for r in records if r.pair == pair) for pair in pairs}
    facts = {**provenance(run),
             "class set": [f"{classes.class_set} ({len(classes.entries)} classes used)"],
             "images": [f"{len(records)} ({sum(not r.rendered for r in records)} failed "
                        "renders)"]}
    return {
        "title": (f"{first[pairs[0]].source} → {first[pairs[0]].target}" if len(pairs) == 1
                  else f"{len(pairs)} class pairs"),
        "facts": {label: values for label, values in facts.items() if values},
        "meaningless": meaningless(run),
        "overall": arm_rows(records),
        "transfer": transfer_tables(records),
        "pairs": [pair_section(run, pair, [r for r in records if r.pair == pair], page_dir,
                               per_pair) for pair in pairs],
    }


def arm_rows(records: Sequence[AttackRecord]) -> list[dict]:
    """``summarize`` per arm (fooled, fooled & valid, both over rendered images), method first."""
    summary = summarize(records)
    return [{"arm": arm, **summary[arm]} for arm in sorted(summary, key=arm_rank)]


def transfer_tables(records: Sequence[AttackRecord]) -> list[dict]:
    """Per attacked model: rows of judges, columns of arms, the rate each judge says target.

    Rates are over the rendered images a judge scored. The baseline columns are the reference: a
    judge that takes many source-only images for the target is confused, not attacked.
    """
    tables = []
    for model in distinct(r.model for r in records):
        mine = [r for r in records if r.model == model and r.rendered]
        arms = sorted(distinct(r.arm for r in mine), key=arm_rank)
        rows = []
        for judge in distinct(j for r in mine for j in r.scores):
            cells = []
            for arm in arms:
                scored = [r.scores[judge] for r in mine if r.arm == arm and judge in r.scores]
                cells.append(rate_summary(sum(s["success"] for s in scored), len(scored)))
            rows.append({"judge": judge, "attacked": judge == model, "cells": cells})
        tables.append({"model": model, "arms": arms, "rows": rows})
    return tables


def pair_section(run: Run, pair: str, records: Sequence[AttackRecord], page_dir: Path,
                 per_pair: int) -> dict:
    method = [r for r in records if r.arm == "method" and r.rendered]
    # The checker's valid successes are the ones that count: show them first.
    fooled = sorted((r for r in method if r.top1_success), key=lambda r: not r.valid)
    not_fooled = [r for r in method if not r.top1_success]
    flips = flip_words(run.base)  # which word made each explained success (neuronattack explain)
    return {
        "id": pair, "source": records[0].source, "target": records[0].target,
        "seeds": distinct(str(r.run_seed) for r in records),
        "arms": arm_rows(records),
        "selection": read_selection(run, records[0]),
        "cues": ((read_cues(run.base) or {}).get("pairs", {}).get(pair) or {}).get("cues", []),
        "fooled": [tile(r, run, page_dir) | {"flip": flips.get(r.id)}
                   for r in fooled[:per_pair]], "n_fooled": len(fooled),
        "not_fooled": [tile(r, run, page_dir) for r in not_fooled[:per_pair]],
        "n_not_fooled": len(not_fooled),
    }


def read_selection(run: Run, record: AttackRecord) -> dict | None:
    """The method's neurons and words for the record's attack (a campaign's first seed)."""
    path = run.base / run.unit_of(record) / "selection-method.json"
    return json.loads(path.read_text()) if path.is_file() else None


def tile(record: AttackRecord, run: Run, page_dir: Path) -> dict:
    """One gallery image: what it showed, which checks it failed, each judge's margin."""
    image = os.path.relpath(run.base / record.image, page_dir)
    why = run.base / why_map_path(record.image)
    verdict = record.verdict or {}
    failed_checks = [label for key, label in (("source_present", "source not seen"),
                                              ("recognisable", "source too small"),
                                              ("target_absent", "target seen"))
                     if not verdict.get(key, True)]
    return {
        "src": quote(Path(image).as_posix()), "prompt": record.prompt,
        "why_src": quote(Path(os.path.relpath(why, page_dir)).as_posix()) if why.is_file()
        else None,
        "words": list(record.words), "neurons": list(record.neurons), "seed": record.seed,
        "fooled": record.top1_success, "binary": record.success, "kind": record.kind,
        "valid": record.valid, "failed_checks": failed_checks,
        "margins": [{"judge": judge, "margin": s["margin"], "fooled": s["success"]}
                    for judge, s in record.scores.items()],
    }
