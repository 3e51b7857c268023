"""Plug-ins: worlds and models that bring their own loaders, found through package entry points.

A plug-in is a :class:`Plugin` published under the entry-point group :data:`GROUP`, e.g. in its
``pyproject.toml``::

    [project.entry-points."neuronattack.plugins"]
    toy = "neuronattack.toy.plugin:TOY"

Its name then works wherever a spec is read, beside the built-in forms: ``--clip NAME`` (or
``NAME:REST``, REST handed to its loader), ``--classes NAME``, ``--generator NAME`` and
``--checker NAME``. The toy world is the one plug-in shipped with the package, so it reaches the
attack through the same doors as a real model, and nothing below it names it.

Entry points, not imports, because the loaders (``models.clip``) sit below the worlds they load:
the name is read from installed metadata, and only the plug-in asked for is imported. Nothing here
imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution, entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from neuronattack.errors import NeuronAttackError

if TYPE_CHECKING:
    from neuronattack.models.checking import Checker
    from neuronattack.models.generators import Generator
    from neuronattack.models.loaded import LoadedClip

GROUP = "neuronattack.plugins"
DISTRIBUTION = "neuronattack"


@dataclass(frozen=True)
class Plugin:
    """What a plug-in provides; each part is optional, and None means "not this kind of spec".

    - ``load_clip(rest, device)``: the CLIP of spec ``NAME`` (rest None) or ``NAME:REST``;
    - ``class_names()``: the class set ``--classes NAME``;
    - ``make_generator(device)``: the generator ``--generator NAME``, with its own settings; its
      ``name`` is the plug-in's, so the rest can be found from the generator (or a record) alone;
    - ``make_checker(class_names)``: the checker ``--checker NAME``, and the default checker of
      the plug-in's own CLIP (spec ``NAME``);
    - ``drawable_words()``: what its generator can draw, for the random-words arm (a diffusion
      model draws anything; a world's renderer only its own words);
    - ``build_atlas(clip, atlas_dir, show_progress)``: the atlas of its CLIP from its own images,
      when an attack finds none and no images are given.
    """

    name: str
    load_clip: Callable[[str | None, str], LoadedClip] | None = None
    class_names: Callable[[], list[str]] | None = None
    make_generator: Callable[[str], Generator] | None = None
    make_checker: Callable[[Sequence[str]], Checker] | None = None
    drawable_words: Callable[[], list[str]] | None = None
    build_atlas: Callable[[LoadedClip, Path, bool], object] | None = None


@cache
def _entry_points() -> dict[str, EntryPoint]:
    """Entry points of :data:`GROUP` by name; the first on ``sys.path`` wins a duplicate name
    (a wheel installed ahead of an editable checkout, as the wheel smoke test does)."""
    try:
        own = distribution(DISTRIBUTION).entry_points
    except PackageNotFoundError:
        own = None
    if own is not None and not own.select(group=GROUP):
        # The toy world always ships as one: an install made before plug-ins existed lacks it.
        raise NeuronAttackError(
            f"The installed metadata of {DISTRIBUTION} lists no {GROUP} entry points (it predates "
            "them); reinstall the package, e.g. 'pip install -e .' in the checkout.")
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=GROUP):
        found.setdefault(entry.name, entry)
    return found


def plugin_names() -> tuple[str, ...]:
    """Names of the installed plug-ins, sorted; none is imported."""
    return tuple(sorted(_entry_points()))


@cache
def find_plugin(name: str) -> Plugin | None:
    """The plug-in called ``name``, imported on first use; None when there is none."""
    entry = _entry_points().get(name)
    if entry is None:
        return None
    plugin = entry.load()
    if not isinstance(plugin, Plugin) or plugin.name != name:
        raise NeuronAttackError(
            f"The {GROUP} entry point {name!r} ({entry.value}) is not a Plugin named {name!r}; "
            "fix or uninstall the package that publishes it.")
    return plugin


def plugins_with(part: str) -> list[Plugin]:
    """Installed plug-ins that provide ``part`` (a :class:`Plugin` field), by name."""
    return [plugin for name in plugin_names()
            if getattr(plugin := find_plugin(name), part) is not None]


def clip_plugin(spec: str) -> Plugin | None:
    """The plug-in whose CLIP a spec names (``NAME`` or ``NAME:REST``), or None."""
    plugin = find_plugin(spec.partition(":")[0])
    return plugin if plugin is not None and plugin.load_clip is not None else None

