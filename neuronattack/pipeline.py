"""From specs to an atlas and an attack context: the steps the CLI, campaigns and the demo share.

The library's one way to say "use this atlas, or build it" and "load the models an attack uses",
and the one home of the default output folders (pair folders are named by
``attack.settings.pair_name``). Importing this module loads no torch (the CLI reads its defaults
from here); models load inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from neuronattack.attack.settings import (
    DEFAULT_CHECKER,
    DEFAULT_GENERATOR,
    DEFAULT_WRITER,
    RENDER_BATCH,
    pair_name,
)
from neuronattack.errors import NeuronAttackError
from neuronattack.progress import stderr_console

if TYPE_CHECKING:
    from neuronattack.attack.run import AttackContext
    from neuronattack.models.clip import LoadedClip
    from neuronattack.neurons.atlas import Atlas

# Relative to the working directory, like every default output folder of the CLI.
OUTPUTS = Path("outputs")
DEMO_FOLDER = OUTPUTS / "demo"
# How a Python caller is told to supply a missing atlas; the CLI and campaigns name their options.
PYTHON_ATLAS_OPTIONS = ("pass images=DIR", "atlas_dir=DIR")


def attack_folder(source: str, target: str) -> Path:
    """Where ``neuronattack attack SOURCE TARGET`` writes by default."""
    return OUTPUTS / "attacks" / pair_name(source, target)


def atlas_folder(clip_spec: str) -> Path:
    """Where the atlas of a CLIP lives by default: ``outputs/atlas/ViT-B-32_openai``."""
    from neuronattack.models.clip import spec_slug

    return OUTPUTS / "atlas" / spec_slug(clip_spec)


def obtain_atlas(clip: LoadedClip, atlas_dir: Path | None = None, images: Path | None = None,
                 device: str = "cpu", show_progress: bool = True,
                 options: tuple[str, str] = PYTHON_ATLAS_OPTIONS) -> Atlas:
    """The atlas in ``atlas_dir`` (default :func:`atlas_folder`), built first when it is missing:
    by analysing ``images`` with ``analyze``'s defaults, or for a plug-in's CLIP without images
    (the toy CLIP), by the plug-in from its own images (the toy world's scenes). Refused when it
    was built on other vision weights than ``clip``'s.

    ``options`` name, for the error when neither applies, how the caller supplies images and an
    atlas (``("pass --images DIR", "--atlas")`` for the CLI).
    """
    from neuronattack.models.plugins import clip_plugin
    from neuronattack.neurons.atlas import Atlas

    atlas_dir = Path(atlas_dir) if atlas_dir is not None else atlas_folder(clip.spec)
    if not (atlas_dir / "atlas.json").exists():
        if images is not None:
            analyse_into(clip, Path(images), atlas_dir, device, show_progress)
        elif (plugin := clip_plugin(clip.spec)) is not None and plugin.build_atlas is not None:
            plugin.build_atlas(clip, atlas_dir, show_progress)
        else:
            raise NeuronAttackError(f"No atlas at {atlas_dir}; {options[0]} to analyse "
                                    f"{clip.spec} first, or {options[1]} to use an existing one.")
    atlas = Atlas.load(atlas_dir)
    atlas.require_model(clip)  # the weights under that spec may have changed since
    return atlas


def analyse_into(clip: LoadedClip, images: Path, atlas_dir: Path, device: str,
                 show_progress: bool = True) -> None:
    """The atlas with ``analyze``'s defaults (the three blocks before the last, 100 images per
    neuron, the 30k common words)."""
    from neuronattack.imagesets import scan_images
    from neuronattack.neurons.analysis import analyze, default_layers
    from neuronattack.neurons.atlas import ensure_atlas
    from neuronattack.neurons.settings import AnalysisSettings

    blocks = len(clip.model.visual.transformer.resblocks)
    stderr_console().print(f"no atlas yet: analysing {clip.spec} over {images} into {atlas_dir}")
    analyze(clip, scan_images(images), atlas_dir,
            AnalysisSettings(layers=default_layers(blocks)), device=str(device),
            show_progress=show_progress)
    ensure_atlas(atlas_dir, clip, show_progress=show_progress)


def attack_context(clip: LoadedClip, atlas: Atlas, class_names: Sequence[str], *,
                   generator: str = DEFAULT_GENERATOR, generator_options: dict | None = None,
                   writer: str = DEFAULT_WRITER, judges: Sequence[str] = (),
                   checker: str = DEFAULT_CHECKER,
                   device: str = "cpu", render_batch: int | None = RENDER_BATCH,
                   class_set: str | None = None, why_maps: bool = True,
                   show_progress: bool = True) -> AttackContext:
    """Every model an attack uses, loaded from specs once and shared across pairs.

    ``generator``: a ``models.generators.load_generator`` spec (``toy`` included), with
    ``generator_options`` (steps, guidance, size, batch_size); ``writer``: ``template`` or
    ``hf:REPO_OR_PATH``; ``judges``: extra CLIPs measuring transfer; ``checker``: auto, none, toy
    or clip:SPEC.
    ``render_batch=None`` renders in the generator's own batch size. ``class_set`` (the spec the
    names came from) is recorded for ``explain``, which judges again with it.
    """
    from neuronattack.attack.setup import build_context
    from neuronattack.maps.why import write_why_maps
    from neuronattack.models.generators import load_generator
    from neuronattack.writing import load_writer

    made = load_generator(generator, device=str(device), **(generator_options or {}))
    context = build_context(
        clip, atlas, made, load_writer(writer, device=str(device)), list(class_names),
        judge_specs=tuple(judges), checker=checker, device=device,
        render_batch=made.config.batch_size if render_batch is None else render_batch,
        show_progress=show_progress)
    if class_set is not None:
        context.extra_meta["class_set"] = class_set
    context.write_why_maps = write_why_maps if why_maps else None
    return context
