"""Toy-world data for the heads tools, drawn by the toy renderer, and the measurements on them.

- ``draw_labelled``: cue-free single-class scenes in class folders (TextSpan, ablation curve).
- ``draw_cue_split``: a Waterbirds-style grouped set from the planted background cues: for each
  cue (ship on water, …) the cue's class on and off its background, other classes on it, and
  other classes on neutral backgrounds; a CSV ``image,label,group`` for ``debias``.
- ``draw_attribute_set``: scenes with their colour and background recorded, for retrieval.
- ``measure``: all of it on one toy CLIP, the figures of the heads issue (``python -m
  neuronattack.heads.toy OUT [--clip toy:/path]``).

Every set is seeded; the groups and sizes were fixed before anything was measured on them.
"""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path

from neuronattack.toy.draw import draw
from neuronattack.toy.scenes import Scene, sample_scene
from neuronattack.toy.world import BACKGROUNDS, CLASSES, CUES

BACKGROUND_CUES = tuple(cue for cue in CUES if cue.kind == "background")
CUE_BACKGROUNDS = frozenset(cue.value for cue in BACKGROUND_CUES)
CUE_CLASSES = frozenset(cue.cls for cue in BACKGROUND_CUES)
# Backgrounds that are no class's cue, and classes whose cue (if any) is not a background.
NEUTRAL_BACKGROUNDS = tuple(bg for bg in BACKGROUNDS if bg not in CUE_BACKGROUNDS)
OTHER_CLASSES = tuple(cls for cls in CLASSES if cls not in CUE_CLASSES)
NEUTRAL_GROUP = "other class, neutral background"


def _scene(rng: random.Random, cls: str, background: str) -> Scene:
    """A cue-free single-kind scene with its main class and background set."""
    scene = sample_scene(rng, with_cues=False, max_kinds=1)
    return replace(scene, objects=(replace(scene.objects[0], cls=cls),), background=background)


def draw_labelled(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` cue-free single-class scenes as ``folder/CLASS/NNNNN.png``."""
    folder = Path(folder)
    rng = random.Random(f"heads-labelled:{seed}")
    for index in range(count):
        scene = sample_scene(rng, with_cues=False, max_kinds=1)
        path = folder / scene.main_class / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(scene, seed=rng.getrandbits(32)).save(path)
    return folder


def cue_groups() -> list[tuple[str, list[str], list[str]]]:
    """``(group, classes, backgrounds)`` of the split, in a fixed order."""
    groups = []
    for cue in BACKGROUND_CUES:
        groups += [
            (f"{cue.cls} on {cue.value}", [cue.cls], [cue.value]),
            (f"{cue.cls} off {cue.value}", [cue.cls], list(NEUTRAL_BACKGROUNDS)),
            (f"other class on {cue.value}", list(OTHER_CLASSES), [cue.value]),
        ]
    return groups + [(NEUTRAL_GROUP, list(OTHER_CLASSES), list(NEUTRAL_BACKGROUNDS))]


def draw_cue_split(folder: Path, per_group: int = 100, seed: int = 0) -> Path:
    """The grouped set (module docstring) as PNGs plus ``folder/groups.csv``; returns the CSV."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"heads-cue-split:{seed}")
    rows = []
    for number, (group, classes, backgrounds) in enumerate(cue_groups()):
        for index in range(per_group):
            scene = _scene(rng, rng.choice(classes), rng.choice(backgrounds))
            name = f"g{number:02d}-{index:04d}.png"
            draw(scene, seed=rng.getrandbits(32)).save(folder / name)
            rows.append({"image": name, "label": scene.main_class, "group": group})
    path = folder / "groups.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def draw_attribute_set(folder: Path, count: int = 600, seed: int = 0) -> list[dict]:
    """Cue-free single-kind scenes with every background equally likely; returns one record per
    image: ``{"image", "class", "colour", "background"}`` (also in ``folder/attributes.csv``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"heads-attributes:{seed}")
    records = []
    for index in range(count):
        scene = sample_scene(rng, with_cues=False, max_kinds=1)
        name = f"{index:05d}.png"
        draw(scene, seed=rng.getrandbits(32)).save(folder / name)
        records.append({"image": name, "class": scene.main_class,
                        "colour": scene.objects[0].colour, "background": scene.background})
    with (folder / "attributes.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return records


def shortcut_carriers(clip, grouped, show_progress: bool = True) -> dict:
    """Where the cue lives: group accuracies with every head's direct path mean-ablated (all
    layers), and with every MLP's instead. A shortcut that survives both is carried redundantly,
    and no head ablation alone can remove it."""
    from dataclasses import asdict

    from neuronattack.heads.ablation import ablated_embeddings
    from neuronattack.heads.contributions import collect
    from neuronattack.heads.debias import group_accuracy
    from neuronattack.heads.textspan import heads_mean_ablated
    from neuronattack.heads.zeroshot import classifier

    layers = tuple(range(len(clip.model.visual.transformer.resblocks)))
    contrib = collect(clip, grouped.image_set, layers, show_progress=show_progress)
    classes, labels = classifier(clip, grouped.class_names), grouped.labels()
    embeddings = {"plain": contrib.total(),
                  "every head": heads_mean_ablated(contrib, contrib.head_names()),
                  "every MLP": ablated_embeddings(contrib, 0, mlps=True)}
    return {name: asdict(group_accuracy(embedding, classes, labels, grouped.groups))
            for name, embedding in embeddings.items()}


def text_query_precision(clip, contrib, records: list[dict], role: str, heads: list,
                         reference: list[str], k: int = 10) -> dict:
    """For each value of ``role`` (``colour`` or ``background``) in the records: the share of the
    ``k`` images nearest to the bare word (centred by ``reference``) that show it, by the role's
    heads and by the whole embedding; averaged over the values."""
    from neuronattack.heads.retrieve import group_vectors, mean_text, nearest
    from neuronattack.models.zeroshot import text_embedding

    centre = mean_text(clip, reference)
    values = sorted({r[role] for r in records} - {"plain"})
    scores: dict[str, list[float]] = {"full embedding": [], f"{role} heads": []}
    for value in values:
        query = text_embedding(clip, value).cpu() - centre
        for name, chosen in (("full embedding", None), (f"{role} heads", heads)):
            if chosen is not None and not chosen:
                continue
            found, _ = nearest(query, group_vectors(contrib, chosen), k)
            scores[name].append(sum(records[i][role] == value for i in found.tolist()) / k)
    return {name: sum(values_) / len(values_) if values_ else None
            for name, values_ in scores.items()} | {"queries": values}


def measure(out_dir: Path, clip_spec: str = "toy", labelled: int = 1200, per_group: int = 100,
            attribute_images: int = 600, last: int = 4, draws: int = 50,
            show_progress: bool = True) -> dict:
    """Ablation curve, head roles, debias by the ``background`` role and retrieval by the
    ``colour`` and ``background`` roles on freshly drawn toy sets; writes ``OUT/measure.json``."""
    from neuronattack.artifacts import versions, write_json
    from neuronattack.heads.ablation import run_ablate, write_ablation
    from neuronattack.heads.contributions import collect, head_name, last_layers
    from neuronattack.heads.debias import read_grouped_csv, run_debias
    from neuronattack.heads.retrieve import group_vectors, precision_at_k
    from neuronattack.heads.text_pool import toy_pool
    from neuronattack.heads.textspan import build_head_roles
    from neuronattack.imagesets import ImageSet, scan_images
    from neuronattack.models.clip import load_clip, weights_fingerprint

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        from neuronattack.errors import NeuronAttackError

        raise NeuronAttackError(f"{out_dir} is not empty; the sets are drawn afresh into a new "
                                "folder, so give one that does not exist yet.")
    clip = load_clip(clip_spec)
    labelled_set = scan_images(draw_labelled(out_dir / "labelled", labelled))
    curve = run_ablate(clip, labelled_set, show_progress=show_progress)
    write_ablation(curve, out_dir / "ablation", title=f"{clip.spec}: ablation curve")
    layers = last_layers(clip.model.visual, last)
    roles = build_head_roles(clip, labelled_set, out_dir / "heads", layers, toy_pool(),
                             show_progress=show_progress)

    grouped = read_grouped_csv(draw_cue_split(out_dir / "cue-split", per_group))
    background_heads = roles.role_heads("background")
    # No head of the role (possible on tiny sets): nothing to ablate, and the report says so.
    debiased = run_debias(clip, grouped, background_heads, layers, draws=draws,
                          show_progress=show_progress).as_dict() if background_heads else None

    carriers = shortcut_carriers(clip, grouped, show_progress)

    records = draw_attribute_set(out_dir / "attributes", attribute_images)
    folder = out_dir / "attributes"
    attribute_set = ImageSet(root=folder, paths=tuple(r["image"] for r in records),
                             labels=(None,) * len(records),
                             sizes=tuple((folder / r["image"]).stat().st_size for r in records))
    contrib = collect(clip, attribute_set, layers, show_progress=show_progress)
    rng = random.Random(0)
    retrieval = {}
    for role in ("colour", "background"):
        heads = roles.role_heads(role)
        groups = {"full embedding": None, f"{role} heads": heads}
        row = {"heads": [head_name(h) for h in heads]}
        for attribute in ("colour", "background", "class"):
            values = [r[attribute] for r in records]
            row[attribute] = {name: precision_at_k(group_vectors(contrib, chosen), values)
                              if chosen is None or chosen else None
                              for name, chosen in groups.items()}
            if heads:
                random_scores = [precision_at_k(group_vectors(
                    contrib, rng.sample(contrib.head_names(), len(heads))), values)
                    for _ in range(draws)]
                row[attribute]["random heads (mean)"] = sum(random_scores) / draws
                row[attribute]["random heads (max)"] = max(random_scores)
        row["text queries"] = text_query_precision(clip, contrib, records, role, heads,
                                                   roles.texts)
        retrieval[role] = row

    result = {
        "model": clip.spec,
        "vision_fingerprint": weights_fingerprint(clip.model.visual),
        "ablation": curve.as_dict(),
        "textspan_accuracy": roles.accuracy,
        "heads": [roles.card(head).as_dict() for head in roles.heads],
        "debias_background": debiased,
        "shortcut_carriers": carriers,
        "retrieval_precision_at_10": retrieval,
        "settings": {"labelled": labelled, "per_group": per_group,
                     "attribute_images": attribute_images, "last": last, "draws": draws},
        "versions": versions(),
    }
    write_json(out_dir / "measure.json", result)
    return result


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=measure.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--clip", default="toy")
    parser.add_argument("--per-group", type=int, default=100)
    arguments = parser.parse_args()
    figures = measure(arguments.out, arguments.clip, per_group=arguments.per_group)
    print(json.dumps({key: figures[key] for key in
                      ("ablation", "textspan_accuracy", "retrieval_precision_at_10")}, indent=1))
