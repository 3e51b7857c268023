"""Do why-maps point at the cue? The toy world's check, where every region is known exactly.

For every valid image of a toy attack run, the why-map (each patch's share of the judge's margin
``cos(target) − cos(source)``) is recomputed and its *positive* mass (the pull toward the target)
is split over regions the renderer reports pixel-exactly (``render_with_layouts``):

- ``cue``: the planted cue of the pair's target, where it is drawn: the background's visible
  pixels (water, sky, road), the prop (ball) or the sign (letter k). A colour cue (red apple) is
  painted on the source object itself, so it has no region of its own and is left out;
- ``source``: every drawn copy of the source class;
- ``sign``: any sign, whatever its glyph (typographic successes);
- ``flip`` / ``flip-change``: see :func:`run_shares`.

A patch's value is spread evenly over its pixels, so a share is
``Σ_p max(v_p, 0) · area_p(region) / Σ_p max(v_p, 0)``, with ``area_p`` the fraction of patch p
inside the region. The same share for a uniform map is the region's area: the baseline each share
is read against.

    python -m neuronattack.maps.toycheck outputs/demo [--clip toy]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from neuronattack.toy.draw import Layout
from neuronattack.toy.world import BACKGROUNDS, CUES, PROPS, Cue


def word_region(layout: Layout, word: str, glyph: str | None = None) -> np.ndarray | None:
    """Bool ``[H, W]`` pixels a context word drew: a background word (or rain, drawn on the
    background) the visible background, a prop its prop, "sign" the sign, "letter k" / "number 7"
    the sign when it shows that glyph (``glyph``: the one the sign shows, from the scene). None
    for words without a region of their own (colours and patterns live on objects) or not drawn
    in this image."""
    word = word.lower()
    if word in BACKGROUNDS:
        return _visible_background(layout) if layout.background == word else None
    if word in ("rain", "rainy", "raining"):
        return _visible_background(layout) if layout.weather == "rain" else None
    if word.rstrip("s") in PROPS:
        return layout.prop_masks.get(word.rstrip("s"))
    if word in ("sign", "signs"):
        return layout.sign_mask
    if word.split()[0] in ("letter", "number"):
        return layout.sign_mask if word.split()[-1] == glyph else None
    return None


def _visible_background(layout: Layout) -> np.ndarray:
    covered = [obj.mask for obj in layout.objects] + list(layout.prop_masks.values())
    if layout.sign_mask is not None:
        covered.append(layout.sign_mask)
    # An attack image always draws its source, so something covers part of the frame.
    return ~np.logical_or.reduce(covered)


def cue_region(layout: Layout, cue: Cue, glyph: str | None = None) -> np.ndarray | None:
    """The pixels showing a planted cue (None when not drawn, or for a colour cue, which lives on
    an object's own pixels); ``glyph`` as for :func:`word_region`."""
    if cue.kind == "colour":
        return None
    return word_region(layout, f"letter {cue.value}" if cue.kind == "sign" else cue.value, glyph)


def class_region(layout: Layout, cls: str) -> np.ndarray | None:
    masks = [obj.mask for obj in layout.objects if obj.cls == cls]
    return np.logical_or.reduce(masks) if masks else None


def patch_fractions(mask: np.ndarray, grid: tuple[int, int]) -> Tensor:
    """Fraction of each patch's pixels inside ``mask``: ``[grid_h, grid_w]``."""
    height, width = mask.shape
    blocks = torch.from_numpy(mask.astype(np.float64)).reshape(
        grid[0], height // grid[0], grid[1], width // grid[1])
    return blocks.mean((1, 3))


def positive_share(values: Tensor, fractions: Tensor) -> float | None:
    """Share of the map's positive mass inside a region (``fractions`` from
    :func:`patch_fractions`); None when the map has no positive mass."""
    positive = values.double().clamp(min=0)
    total = float(positive.sum())
    return float((positive * fractions).sum()) / total if total > 0 else None


def region_shares(values: Tensor, regions: dict[str, np.ndarray | None]) -> dict:
    """Per named region of one image: its share of the map's positive mass and its area (None
    for a region the image does not show)."""
    grid = tuple(values.shape)
    row = {}
    for name, mask in regions.items():
        if mask is None or not mask.any():
            row[name] = None
            continue
        fractions = patch_fractions(mask, grid)
        row[name] = {"share": positive_share(values, fractions), "area": float(mask.mean())}
    return row


REGIONS = ("cue", "source", "sign", "flip", "flip-change")


def run_shares(run_dir: Path, clip_spec: str = "toy") -> dict:
    """Shares over every image of a toy attack folder or a demo folder (``attacks/*``).

    ``flip`` is the region of the word whose removal cost a success most (``neuronattack
    explain``'s ``explain.jsonl``), where that word drew a region of its own; ``flip-change`` the
    same region's share of what removing the word changed (why-map minus the why-map of the image
    drawn without the word).
    """
    from neuronattack.attack.explain import flip_words
    from neuronattack.attack.records import RESULTS, read_records
    from neuronattack.maps.why import why_maps
    from neuronattack.models.clip import load_clip
    from neuronattack.models.zeroshot import class_embeddings, judge_templates
    from neuronattack.toy.renderer import ToyRenderer
    from neuronattack.toy.world import CLASSES

    run_dir = Path(run_dir)
    folders = sorted(p.parent for p in run_dir.glob(f"attacks/*/{RESULTS}")) or [run_dir]
    clip = load_clip(clip_spec)
    names = list(CLASSES)
    rows = class_embeddings(clip, names, judge_templates(clip))
    renderer = ToyRenderer()
    pairs = {}
    for folder in folders:
        # Valid images only: an invalid one may draw the target, which then takes the pull.
        records = [r for r in read_records(folder / RESULTS) if r.image and r.valid]
        if not records:
            continue
        source, target = records[0].source, records[0].target
        cue = next((c for c in CUES if c.cls == target), None)
        flips = flip_words(folder)
        drawn = renderer.render_with_layouts([r.prompt for r in records],
                                             [r.seed for r in records])
        embeddings = rows[names.index(source)], rows[names.index(target)]
        maps = why_maps(clip, [image for image, _ in drawn], *embeddings).values.cpu()
        # The same image drawn without its flip word: what that word's absence changed, patch by
        # patch (the toy renderer redraws the same scene minus the word).
        flipped = {r.id: flips[r.id] for r in records if r.top1_success and r.id in flips}
        changes = {}
        if flipped:
            seeds = {r.id: r.seed for r in records}
            without = renderer.render([f["prompt"] for f in flipped.values()],
                                      [seeds[key] for key in flipped])
            changes = dict(zip(flipped, why_maps(clip, without, *embeddings).values.cpu(),
                               strict=True))
        per_image = []
        for record, (_, layout), values in zip(records, drawn, maps, strict=True):
            flip = flipped.get(record.id)
            glyph = renderer.parse(record.prompt).scene.sign
            region = word_region(layout, flip["word"], glyph) if flip else None
            per_image.append({
                "id": record.id, "arm": record.arm, "success": record.top1_success,
                "flip_word": flip["word"] if flip else None,
                **region_shares(values, {"cue": cue_region(layout, cue, glyph) if cue else None,
                                         "source": class_region(layout, source),
                                         "sign": layout.sign_mask, "flip": region}),
                **({"flip-change": region_shares(values - changes[record.id],
                                                 {"flip-change": region})["flip-change"]}
                   if flip else {}),
            })
        pairs[f"{source} → {target}"] = {
            "cue": None if cue is None else f"{cue.kind} {cue.value}", "images": len(records),
            "successes": sum(row["success"] for row in per_image),
            "flip_words": sorted({row["flip_word"] for row in per_image if row["flip"]}),
            "all": summarise(per_image),
            "success": summarise([row for row in per_image if row["success"]]),
            "method": summarise([row for row in per_image if row["arm"] == "method"]),
        }
    return {"run": str(run_dir), "model": clip.spec, "pairs": pairs}


def summarise(rows: Sequence[dict]) -> dict:
    """Mean share and area of each region over the images that show it."""
    out = {}
    for region in REGIONS:
        shown = [row[region] for row in rows
                 if row.get(region) and row[region]["share"] is not None]
        out[region] = {
            "images": len(shown),
            "share": float(np.mean([s["share"] for s in shown])) if shown else None,
            "area": float(np.mean([s["area"] for s in shown])) if shown else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a demo folder or one toy attack folder")
    parser.add_argument("--clip", default="toy")
    args = parser.parse_args()
    result = run_shares(args.run, args.clip)
    print(json.dumps(result, indent=1))
    print(f"\nwhy-map positive mass, {result['model']}: share of the mass / share of the area "
          "(images), over all valid images and over the successes among them (top-1 = target)")
    for pair, row in result["pairs"].items():
        cells = []
        for subset in ("all", "success"):
            for region in REGIONS:
                cell = row[subset][region]
                if subset == "all" and region.startswith("flip"):
                    continue
                cells.append(f"{subset} {region} " + (
                    f"{cell['share']:.2f}/{cell['area']:.2f} ({cell['images']})"
                    if cell["share"] is not None else "–"))
        print(f"{pair} [{row['cue']}; {row['successes']} successes; flip words "
              f"{', '.join(row['flip_words']) or '–'}]: " + "; ".join(cells))


if __name__ == "__main__":
    main()
