"""Plug-ins (models/plugins.py): the toy world is found in installed metadata, and any plug-in is
served through the same doors as real models (CLIP, class set, generator, checker, drawable
words, atlas), by name, with nothing below it naming it."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint, EntryPoints
from types import SimpleNamespace

import pytest

from neuronattack import pipeline
from neuronattack.attack.setup import (
    checker_spec_problem,
    class_set_names,
    default_checker,
    drawable_words,
    load_class_names,
    make_checker,
)
from neuronattack.errors import NeuronAttackError
from neuronattack.models import plugins
from neuronattack.models.clip import clip_spec_problem, load_clip
from neuronattack.models.generators import generator_spec_problem, load_generator
from neuronattack.models.plugins import Plugin, find_plugin, plugin_names
from neuronattack.toy.plugin import TOY

calls: list[tuple] = []


class AtlasBuilt(Exception):
    """Raised by the fake atlas builder, so the test sees that obtain_atlas called it."""


def _build_atlas(clip, atlas_dir, show_progress):
    calls.append(("atlas", clip.spec, atlas_dir, show_progress))
    raise AtlasBuilt


FAKE = Plugin(
    "fake",
    load_clip=lambda rest, device: calls.append(("clip", rest, device)) or f"clip {rest}",
    class_names=lambda: ["sun", "moon"],
    make_generator=lambda device: SimpleNamespace(name="fake", device=device),
    make_checker=lambda names: ("checker", tuple(names)),
    drawable_words=lambda: ["star"],
    build_atlas=_build_atlas,
)
PARTLESS = Plugin("partless")  # provides nothing, so its name is no spec anywhere


@pytest.fixture
def fake_installed(monkeypatch):
    entries = {**plugins._entry_points(), **{
        name: EntryPoint(name, f"{__name__}:{target}", plugins.GROUP)
        for name, target in (("fake", "FAKE"), ("partless", "PARTLESS"))}}
    monkeypatch.setattr(plugins, "_entry_points", lambda: entries)
    find_plugin.cache_clear()
    calls.clear()
    yield entries
    find_plugin.cache_clear()


def test_the_toy_world_is_an_installed_plugin_that_imports_nothing_heavy():
    assert "toy" in plugin_names() and find_plugin("toy") is TOY
    assert all(getattr(TOY, part) is not None for part in Plugin.__dataclass_fields__)
    code = ("import sys; from neuronattack.models.plugins import find_plugin; "
            "find_plugin('toy'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_plugin_is_served_through_every_door(fake_installed, tmp_path):
    assert load_clip("fake:/some/weights", device="cpu") == "clip /some/weights"
    assert load_clip("fake") == "clip None"
    assert calls == [("clip", "/some/weights", "cpu"), ("clip", None, "cpu")]
    assert load_class_names("fake") == ["sun", "moon"]
    assert class_set_names() == ["imagenet", "cifar10", "fake", "toy"]
    assert load_generator("fake", device="cpu").device == "cpu"
    assert make_checker("fake", None, ["sun", "moon"], "cpu", False) == ("checker", ("sun", "moon"))
    assert default_checker("fake") == "fake"
    assert default_checker("fake:/other/weights") == "fake"  # the checker reads the drawing
    assert drawable_words(SimpleNamespace(name="fake")) == ["star"]
    assert drawable_words(SimpleNamespace(name="sd-turbo")) is None
    for problem in (clip_spec_problem("fake:anything"), generator_spec_problem("fake"),
                    checker_spec_problem("fake")):
        assert problem is None
    assert checker_spec_problem("nope") == "must be auto, none, fake, toy or clip:SPEC"
    with pytest.raises(NeuronAttackError, match="neither imagenet, cifar10, fake, toy nor a file"):
        load_class_names("nope")
    with pytest.raises(AtlasBuilt):
        pipeline.obtain_atlas(SimpleNamespace(spec="fake:w"), tmp_path / "atlas",
                              show_progress=False)
    assert calls[-1] == ("atlas", "fake:w", tmp_path / "atlas", False)


def test_a_plugin_without_a_part_is_no_spec_of_that_kind(fake_installed):
    assert default_checker("partless") == "clip:ViT-L-14:openai"
    assert "partless" not in class_set_names()
    assert generator_spec_problem("partless").startswith("is not usable (Unknown generator")
    assert checker_spec_problem("partless") == "must be auto, none, fake, toy or clip:SPEC"
    with pytest.raises(NeuronAttackError, match="neither imagenet"):
        load_class_names("partless")


def test_an_entry_point_that_is_not_its_plugin_is_refused(fake_installed):
    fake_installed["liar"] = EntryPoint("liar", f"{__name__}:FAKE", plugins.GROUP)
    with pytest.raises(NeuronAttackError, match="entry point 'liar' .* is not a Plugin named"):
        find_plugin("liar")


def test_an_install_older_than_its_plugins_says_to_reinstall(monkeypatch):
    monkeypatch.setattr(plugins, "distribution",
                        lambda name: SimpleNamespace(entry_points=EntryPoints(())))
    with pytest.raises(NeuronAttackError, match="reinstall the package"):
        plugins._entry_points.__wrapped__()
