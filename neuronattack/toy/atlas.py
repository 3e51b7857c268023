"""The toy CLIP's atlas: analysed over training-distribution scenes, decomposed into the world's
words. What ``neuronattack demo`` builds, and what ``attack``/``campaign --clip toy`` build on
first use when no atlas exists, so every pair of the toy world can be tried by hand."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from neuronattack.imagesets import scan_images
from neuronattack.neurons.analysis import analyze, default_layers
from neuronattack.neurons.atlas import Atlas, ensure_atlas
from neuronattack.neurons.settings import AnalysisSettings
from neuronattack.toy.draw import draw
from neuronattack.toy.scenes import sample_scene
from neuronattack.toy.vocabulary import toy_words


@dataclass(frozen=True)
class ToyAtlasSettings:
    scenes: int = 3000  # images the toy CLIP is analysed over
    top_k: int = 100  # images per neuron for the rank-one fit
    nonzeros: int = 16  # words per neuron
    seed: int = 0


def draw_scenes(folder: Path, count: int, seed: int) -> Path:
    """Training-distribution scenes as PNGs; kept across runs when already complete."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.png"))) == count:
        return folder
    rng = random.Random(seed)
    for index in range(count):
        draw(sample_scene(rng), seed=seed * 1_000_003 + index).save(folder / f"{index:05d}.png")
    return folder


def build_toy_atlas(clip, atlas_dir: Path, scenes_dir: Path,
                    settings: ToyAtlasSettings = ToyAtlasSettings(),
                    show_progress: bool = True) -> Atlas:
    """Scenes → ``analyze`` (the same lens as for real CLIPs) → atlas over the world's words."""
    atlas_dir = Path(atlas_dir)
    scenes = draw_scenes(Path(scenes_dir), settings.scenes, settings.seed)
    blocks = len(clip.model.visual.transformer.resblocks)
    analyze(clip, scan_images(scenes), atlas_dir,
            AnalysisSettings(layers=default_layers(blocks), top_k=settings.top_k),
            batch_size=64, show_progress=show_progress)
    words_file = atlas_dir / "toy_words.txt"
    words_file.write_text("\n".join(toy_words()) + "\n")
    return ensure_atlas(atlas_dir, clip, str(words_file), settings.nonzeros,
                        show_progress=show_progress)
