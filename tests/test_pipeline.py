"""The library's public API and the pipeline's one home for defaults and folder names."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import neuronattack
from neuronattack import pipeline
from neuronattack.errors import NeuronAttackError


def test_every_public_name_resolves():
    for name in neuronattack.__all__:
        assert callable(getattr(neuronattack, name)), name
    assert set(neuronattack.__all__) <= set(dir(neuronattack))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        neuronattack.no_such_thing  # noqa: B018


def test_importing_the_package_and_the_cli_loads_no_torch():
    code = ("import sys, neuronattack, neuronattack.cli, neuronattack.pipeline; "
            "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pair_folder_names_match_record_ids():
    assert pipeline.pair_name("sea lion", "Dog") == "sea_lion-dog"
    assert pipeline.attack_folder("cat", "dog") == Path("outputs/attacks/cat-dog")
    assert pipeline.atlas_folder("ViT-B-32:openai") == Path("outputs/atlas/ViT-B-32_openai")


def test_cli_defaults_come_from_the_pipeline():
    from neuronattack.cli import main

    attack = {param.name: param.default for param in main.commands["attack"].params}
    demo = {param.name: param.default for param in main.commands["demo"].params}
    assert attack["batch_size"] == pipeline.RENDER_BATCH
    assert demo["out_dir"] == pipeline.DEMO_FOLDER


def test_a_missing_atlas_names_the_callers_options(tmp_path):
    clip = SimpleNamespace(spec="random:ViT-B-32")
    with pytest.raises(NeuronAttackError, match=r"No atlas at .*; pass --images DIR to analyse "
                                                r"random:ViT-B-32 first, or --atlas to use"):
        pipeline.obtain_atlas(clip, tmp_path / "atlas", options=("pass --images DIR", "--atlas"))
    with pytest.raises(NeuronAttackError, match="pass images=DIR"):
        pipeline.obtain_atlas(clip, tmp_path / "atlas")
    assert not (tmp_path / "atlas").exists()
