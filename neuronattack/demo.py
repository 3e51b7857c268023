"""``neuronattack demo``: the whole method, for real, offline, on a CPU, in the toy world.

1. Draw scenes from the toy CLIP's training distribution (planted cues included) into a folder.
2. Analyse the toy CLIP over them and decompose every neuron into the world's concept words.
3. Attack class pairs chosen by the planted cues (each target has one) with the method and the
   three baselines at the same budget and seeds; the toy renderer draws exactly what each sentence
   says, so validity (source drawn, target not drawn, no sign) is known by construction.
4. Report success per pair with 95% intervals, and whether each planted cue's word is among the
   words the method selected for its class.

The pairs, budgets and settings below were fixed before any attack was run; they are not tuned to
make the method win.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from neuronattack.artifacts import read_json, write_json
from neuronattack.attack.run import AttackSettings, run_attack, summarize
from neuronattack.attack.setup import build_context
from neuronattack.attack.writers import TemplateWriter
from neuronattack.imagesets import scan_images
from neuronattack.models.clip import load_clip, weights_fingerprint
from neuronattack.neurons.analysis import AnalysisSettings, analyze, default_layers
from neuronattack.neurons.atlas import ensure_atlas
from neuronattack.toy.checker import ToyGenerator
from neuronattack.toy.draw import draw
from neuronattack.toy.scenes import sample_scene
from neuronattack.toy.vocabulary import toy_words
from neuronattack.toy.world import CLASSES, CUES, Cue

# One pair per planted cue: the target carries the cue, the source carries none.
PAIRS = (("cat", "dog"), ("car", "ship"), ("horse", "airplane"), ("car", "truck"),
         ("frog", "bird"), ("flower", "apple"))


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


def draw_scenes(folder: Path, count: int, seed: int) -> Path:
    """Training-distribution scenes as PNGs; kept across runs when already complete."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.png"))) == count:
        return folder
    rng = random.Random(seed)
    for index in range(count):
        draw(sample_scene(rng), seed=seed * 1_000_003 + index).save(folder / f"{index:05d}.png")
    return folder


def cue_recovery(out_dir: Path) -> list[dict]:
    """For each planted cue: is its word among the method's words for the pair targeting it?"""
    rows = []
    for cue in CUES:
        pair = next(((s, t) for s, t in PAIRS if t == cue.cls), None)
        word = cue_word(cue)
        row = {"class": cue.cls, "cue": word, "probability": cue.probability, "pair": pair}
        if pair is None:
            rows.append(row | {"recovered": None})
            continue
        selection = read_json(out_dir / "attacks" / f"{pair[0]}-{pair[1]}" /
                              "selection-method.json")
        words = [w["word"] for w in selection["words"]]
        dropped = {d["word"]: d["reason"] for d in selection["dropped"]}
        rows.append(row | {"recovered": word in words,
                           "rank": words.index(word) + 1 if word in words else None,
                           "dropped_because": dropped.get(word)})
    return rows


def forget_other_weights(out_dir: Path, clip) -> None:
    """A demo folder from other toy weights (an earlier release, a retrained model) is started
    afresh: its analysis and attacks describe another model. Scenes are kept."""
    meta = out_dir / "atlas" / "meta.json"
    if meta.exists() and read_json(meta).get("vision_fingerprint") != weights_fingerprint(
            clip.model.visual):
        for name in ("atlas", "attacks"):
            shutil.rmtree(out_dir / name, ignore_errors=True)


def run_demo(out_dir: Path, settings: DemoSettings = FULL, show_progress: bool = True,
             clip_spec: str = "toy") -> dict:
    """Everything above; returns (and writes to ``out_dir/demo.json``) the tables.

    ``clip_spec`` is the shipped toy CLIP; tests pass other toy weights (``toy:/path``).
    """
    out_dir = Path(out_dir)
    clip = load_clip(clip_spec)
    forget_other_weights(out_dir, clip)
    scenes = draw_scenes(out_dir / "scenes", settings.scenes, settings.seed)
    blocks = len(clip.model.visual.transformer.resblocks)
    atlas_dir = out_dir / "atlas"
    analyze(clip, scan_images(scenes), atlas_dir,
            AnalysisSettings(layers=default_layers(blocks), top_k=settings.top_k),
            batch_size=64, show_progress=show_progress)
    words_file = out_dir / "toy_words.txt"
    words_file.write_text("\n".join(toy_words()) + "\n")
    atlas = ensure_atlas(atlas_dir, clip, str(words_file), settings.nonzeros,
                         show_progress=show_progress)
    context = build_context(clip, atlas, ToyGenerator(), TemplateWriter(), list(CLASSES),
                            checker="toy", show_progress=show_progress)
    pairs = {}
    for source, target in PAIRS:
        records = run_attack(context, AttackSettings(
            source=source, target=target, n=settings.images_per_arm, n_neurons=settings.neurons,
            n_words=settings.words, seed=settings.seed, negative_prompt=None,
        ), out_dir / "attacks" / f"{source}-{target}", show_progress=show_progress)
        pairs[f"{source} → {target}"] = summarize(records)
    result = {"settings": settings.__dict__, "pairs": pairs, "cues": cue_recovery(out_dir)}
    write_json(out_dir / "demo.json", result)
    return result
