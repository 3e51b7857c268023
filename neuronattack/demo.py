"""``neuronattack demo``: the whole method, for real, offline, on a CPU, in the toy world.

1. Draw scenes from the toy CLIP's training distribution (planted cues included), analyse the toy
   CLIP over them and decompose every neuron into the world's concept words (``toy.atlas``).
2. Attack the pre-registered pairs (``DEMO_PAIRS``: one per planted cue, the target carries it)
   with the method and every baseline at the same budget, seeds and writer; the toy checker knows
   each image's validity and kind exactly.
3. Report per pair and arm: contextual top-1 success (the headline), top-1 success of every kind,
   the binary test, and the margin shift against source-only with its 95% bootstrap interval;
   the method arm again with the class-word filter off (the filter's effect); causal cue discovery
   on every successful image (``attack.explain``); planted-cue recovery by selection (the cue word
   among the method's words) and by discovery (among the pair's top-3 discovered cues); the toy
   CLIP's measured cue uptake; and a contact sheet per pair and arm to look at.

The pairs, budgets and settings below were fixed before any attack was run with the weights they
are reported for; they are not tuned to make the method win.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from neuronattack import outdir, pipeline, validation
from neuronattack.artifacts import read_json, write_json
from neuronattack.attack.explain import TOP_CUES, explain_run
from neuronattack.attack.records import AttackRecord
from neuronattack.attack.run import run_attack, summarize
from neuronattack.attack.settings import ARMS, AttackSettings
from neuronattack.attack.stats import separated
from neuronattack.models.clip import load_clip, weights_fingerprint
from neuronattack.toy.atlas import ToyAtlasSettings, build_toy_atlas
from neuronattack.toy.model import WEIGHTS_PATH
from neuronattack.toy.world import CLASSES, CUES, DEMO_PAIRS, Cue

# One pair per planted cue, pre-registered with the world: the target carries the cue.
PAIRS = DEMO_PAIRS
UNFILTERED = "attacks-no-class-filter"
# The demo deletes and rewrites its subfolders, so it only ever runs in a folder that says it is a
# demo's (outdir's rule; there is no flag to run in someone else's).
SCHEMA = "neuronattack.demo/1"
SHEET_COLUMNS = 8
SHEET_SCALE = 2
# Contact-sheet frames: what each image is, at a glance.
FRAMES = {"contextual": (30, 160, 60), "typographic": (40, 90, 220), "distractor": (235, 140, 20),
          "invalid": (90, 90, 90), "not fooled": (225, 225, 225)}
LEGEND_HEIGHT = 16


@dataclass(frozen=True)
class DemoSettings:
    scenes: int  # images the toy CLIP is analysed over
    top_k: int  # images per neuron for the rank-one fit
    images_per_arm: int
    neurons: int = 100
    words: int = 12  # a sentence names 3–6 of them
    nonzeros: int = 16  # words per neuron in the atlas
    seed: int = 0


FULL = DemoSettings(scenes=3000, top_k=100, images_per_arm=48)
FAST = DemoSettings(scenes=400, top_k=20, images_per_arm=8)


def cue_word(cue: Cue) -> str:
    """The vocabulary word that names a cue: "water", "ball", "letter k", "red"."""
    return f"letter {cue.value}" if cue.kind == "sign" else cue.value


def cue_recovery(out_dir: Path, cues: dict) -> list[dict]:
    """For each planted cue: is its word among the method's words for the pair targeting it
    (selection), and among that pair's first three discovered cues (discovery)?"""
    rows = []
    for cue in CUES:
        pair = next(((s, t) for s, t in PAIRS if t == cue.cls), None)
        word = cue_word(cue)
        row = {"class": cue.cls, "cue": word, "probability": cue.probability, "pair": pair}
        if pair is None:
            rows.append(row | {"recovered": None, "discovered": None})
            continue
        name = pipeline.pair_name(*pair)
        selection = read_json(out_dir / "attacks" / name / "selection-method.json")
        words = [w["word"] for w in selection["words"]]
        dropped = {d["word"]: d["reason"] for d in selection["dropped"]}
        ranked = [c["word"] for c in cues.get(name, {}).get("cues", [])]
        rows.append(row | {
            "recovered": word in words, "rank": words.index(word) + 1 if word in words else None,
            "dropped_because": dropped.get(word),
            "discovered": word in ranked[:TOP_CUES],
            "discovery_rank": ranked.index(word) + 1 if word in ranked else None,
            "successes_explained": cues.get(name, {}).get("successes", 0),
        })
    return rows


def cue_uptake(clip_spec: str) -> dict | None:
    """The toy CLIP's measured cue uptake, from the JSON report beside its weights."""
    weights = WEIGHTS_PATH if clip_spec == "toy" else Path(clip_spec.removeprefix("toy:"))
    report = weights.with_suffix(".json")
    return read_json(report).get("cue_uptake") if report.is_file() else None


def forget_other_weights(out_dir: Path, clip) -> None:
    """A demo folder from other toy weights (an earlier release, a retrained model) is started
    afresh: its analysis and attacks describe another model. Scenes are kept."""
    meta = out_dir / "atlas" / "meta.json"
    if meta.exists() and read_json(meta).get("vision_fingerprint") != weights_fingerprint(
            clip.model.visual):
        for name in ("atlas", "attacks", UNFILTERED, "sheets"):
            shutil.rmtree(out_dir / name, ignore_errors=True)


def margin_wins(arms: dict) -> dict:
    """Does the method's margin-shift interval lie wholly above every other arm's?"""
    method = arms["method"]["margin_shift"]["ci95"]
    beaten = {arm: separated(method, row["margin_shift"]["ci95"])
              for arm, row in arms.items() if arm != "method"}
    return {"beats_every_arm": all(beaten.values()), "beaten": beaten}


def contact_sheet(records: list[AttackRecord], folder: Path, path: Path) -> Path:
    """A grid of an arm's images, each framed by what it is (see ``FRAMES``), in index order."""
    records = sorted((r for r in records if r.image), key=lambda r: r.index)
    tile, frame = 64 * SHEET_SCALE, 3
    rows = max(1, -(-len(records) // SHEET_COLUMNS))
    width, height = SHEET_COLUMNS * (tile + 2 * frame), rows * (tile + 2 * frame)
    sheet = Image.new("RGB", (width, height + LEGEND_HEIGHT), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    x = 4
    for label, colour in FRAMES.items():  # the legend: frame colour = what the image is
        pen.rectangle((x, height + 4, x + 9, height + 13), fill=colour, outline=(0, 0, 0))
        label = "success, " + label if label in ("contextual", "typographic", "distractor") \
            else label
        pen.text((x + 13, height + 3), label, fill=(0, 0, 0))
        x += 13 + int(pen.textlength(label)) + 12
    for position, record in enumerate(records):
        x = (position % SHEET_COLUMNS) * (tile + 2 * frame)
        y = (position // SHEET_COLUMNS) * (tile + 2 * frame)
        ImageDraw.Draw(sheet).rectangle((x, y, x + tile + 2 * frame - 1, y + tile + 2 * frame - 1),
                                        fill=FRAMES[outcome(record)])
        image = Image.open(folder / record.image).convert("RGB")
        sheet.paste(image.resize((tile, tile), Image.NEAREST), (x + frame, y + frame))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def outcome(record: AttackRecord) -> str:
    if not record.valid:
        return "invalid"
    return record.kind if record.top1_success else "not fooled"


def run_demo(out_dir: Path, settings: DemoSettings = FULL, show_progress: bool = True,
             clip_spec: str = "toy") -> dict:
    """Everything above; returns (and writes to ``out_dir/demo.json``) the tables.

    ``clip_spec`` is the shipped toy CLIP; tests pass other toy weights (``toy:/path``).
    """
    out_dir = Path(out_dir)
    validation.writable_folder(out_dir)
    outdir.claim(out_dir, SCHEMA)
    with outdir.locked(out_dir):
        if not (out_dir / outdir.MARKER).exists():
            write_json(out_dir / outdir.MARKER, {"schema": SCHEMA})
        return _run_demo(out_dir, settings, show_progress, clip_spec)


def _run_demo(out_dir: Path, settings: DemoSettings, show_progress: bool, clip_spec: str) -> dict:
    clip = load_clip(clip_spec)
    forget_other_weights(out_dir, clip)
    atlas = build_toy_atlas(clip, out_dir / "atlas", out_dir / "scenes", ToyAtlasSettings(
        scenes=settings.scenes, top_k=settings.top_k, nonzeros=settings.nonzeros,
        seed=settings.seed), show_progress=show_progress)
    context = pipeline.attack_context(clip, atlas, CLASSES, generator="toy", writer="template",
                                      checker="toy", show_progress=show_progress)
    pairs, unfiltered, cues, wins = {}, {}, {}, {}
    for source, target in PAIRS:
        name = pipeline.pair_name(source, target)
        attack = AttackSettings(source=source, target=target, n=settings.images_per_arm,
                                arms=ARMS, n_neurons=settings.neurons, n_words=settings.words,
                                seed=settings.seed, negative_prompt=None)
        folder = out_dir / "attacks" / name
        records = run_attack(context, attack, folder, show_progress=show_progress)
        pairs[f"{source} → {target}"] = summary = summarize(records, seed=settings.seed)
        wins[f"{source} → {target}"] = margin_wins(summary)
        # The source alone names no word, so the filter cannot change it: its images are shared.
        without = run_attack(context, AttackSettings(**{
            **asdict(attack), "arms": ("method",), "class_filter": False}),
            out_dir / UNFILTERED / name, show_progress=show_progress)
        reference = [r for r in records if r.arm == "source-only"]
        unfiltered[f"{source} → {target}"] = summarize(without + reference,
                                                      seed=settings.seed)["method"]
        cues[name] = explain_run(folder, context.generator, context.judges[0],
                                 seed=settings.seed, show_progress=show_progress)["pairs"][name]
        for arm in ARMS:
            contact_sheet([r for r in records if r.arm == arm], folder,
                          out_dir / "sheets" / f"{name}-{arm}.png")
    recovery = cue_recovery(out_dir, cues)
    result = {
        "settings": asdict(settings), "arms": list(ARMS), "pairs": pairs,
        "class_filter_off": unfiltered,
        "discovered_cues": {name: row["cues"][:5] for name, row in cues.items()},
        "cues": recovery, "cue_uptake": cue_uptake(clip_spec),
        "goals": {
            "margin_wins": wins,
            "pairs_won": sum(row["beats_every_arm"] for row in wins.values()),
            "cues_discovered": sum(bool(row.get("discovered")) for row in recovery),
            "cues_selected": sum(bool(row.get("recovered")) for row in recovery),
        },
    }
    write_json(out_dir / "demo.json", json.loads(json.dumps(result)))
    return result

