"""load_clip: every spec form, offline, on tiny models (plus one real-size random ViT-B-32)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import open_clip
import open_clip.pretrained
import pytest
import torch
from open_clip.transformer import QuickGELU
from PIL import Image
from safetensors.torch import load_file, save_file

from neuronattack.errors import NeuronAttackError
from neuronattack.models import LoadedClip, load_clip, spec_slug

PARITY_DIR = Path(__file__).parent / "fixtures" / "official-parity-tiny"
PARITY_CONFIG = json.loads((PARITY_DIR / "open_clip_config.json").read_text())
# Registered with open_clip under these names; TINY is the parity fixture's architecture.
TINY = "neuronattack-test-tiny-ViT"
TINY_RESNET = "neuronattack-test-tiny-RN"
TINY_RESNET_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8},
    "text_cfg": PARITY_CONFIG["model_cfg"]["text_cfg"],
}
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


class NotATensor:
    """Anything a weights-only unpickler must refuse."""


@pytest.fixture(scope="module", autouse=True)
def tiny_archs(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("model_configs")
    (folder / f"{TINY}.json").write_text(json.dumps(PARITY_CONFIG["model_cfg"]))
    (folder / f"{TINY_RESNET}.json").write_text(json.dumps(TINY_RESNET_CONFIG))
    open_clip.add_model_config(folder)



def put_in_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> None:
    """Lay files out the way huggingface_hub caches a repo's main branch."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


def weights(loaded: LoadedClip) -> dict[str, torch.Tensor]:
    return loaded.model.state_dict()


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def random_vit_b32() -> LoadedClip:
    """The one real-size build of the session: ViT-B-32 init takes a second or two."""
    return load_clip("random:ViT-B-32")


@pytest.mark.slow
def test_random_vit_b32_has_real_shapes(random_vit_b32: LoadedClip) -> None:
    visual = random_vit_b32.model.visual
    assert random_vit_b32.spec == "random:ViT-B-32@0"
    assert random_vit_b32.arch == "ViT-B-32"
    assert visual.transformer.width == 768
    assert len(visual.transformer.resblocks) == 12
    assert visual.proj.shape == (768, 512)
    assert visual.conv1.kernel_size == (32, 32)


def test_random_is_deterministic_per_seed() -> None:
    first = load_clip(f"random:{TINY}")
    again = load_clip(f"random:{TINY}@0")
    other = load_clip(f"random:{TINY}", seed=1)
    other_by_spec = load_clip(f"random:{TINY}@1", seed=5)

    assert first.spec == again.spec == f"random:{TINY}@0"
    assert other.spec == other_by_spec.spec == f"random:{TINY}@1"
    assert_same_weights(weights(first), weights(again))
    assert_same_weights(weights(other), weights(other_by_spec))
    other_params = dict(other.model.named_parameters())
    for name, param in first.model.named_parameters():
        if name != "logit_scale":  # a constant at init
            assert not torch.equal(param, other_params[name]), name


def test_random_perturbs_every_layernorm_scale_and_bias() -> None:
    model = load_clip(f"random:{TINY}").model
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    biases = {name: p for name, p in model.named_parameters() if "bias" in name}

    assert len(norms) == 2 * 4 + 2 + 2 * 1 + 1  # vision blocks, ln_pre/post, text, ln_final
    for norm in norms:
        assert not torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert 0.05 < (norm.weight - 1).std() < 0.2
    assert any(name.endswith("in_proj_bias") for name in biases)
    for name, bias in biases.items():
        assert not torch.equal(bias, torch.zeros_like(bias)), name


def test_loading_leaves_the_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    load_clip(f"random:{TINY}", seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_tiny_model_is_ready_to_use() -> None:
    loaded = load_clip(f"random:{TINY}")
    image = loaded.preprocess(Image.new("RGB", (50, 40), color=(200, 30, 90)))
    tokens = loaded.tokenizer(["a photo of a cat"])

    assert not loaded.model.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in loaded.model.parameters())
    assert image.shape == (3, 32, 32)
    assert tokens.shape == (1, 77)
    with torch.no_grad():
        assert loaded.model.encode_image(image[None]).shape == (1, 32)
        assert loaded.model.encode_text(tokens).shape == (1, 32)


def test_local_dir_and_bare_folder_load_the_same_fixture_weights() -> None:
    by_schema = load_clip(f"local-dir:{PARITY_DIR}")
    by_path = load_clip(str(PARITY_DIR))

    assert by_schema.spec == by_path.spec == f"local-dir:{os.path.abspath(PARITY_DIR)}"
    assert by_schema.arch == by_schema.spec
    assert_same_weights(weights(by_schema), weights(by_path))
    assert_same_weights(weights(by_schema), load_file(PARITY_DIR / "open_clip_model.safetensors"))


def test_checkpoint_file_takes_the_architecture_from_the_spec() -> None:
    path = PARITY_DIR / "open_clip_model.safetensors"
    loaded = load_clip(f"{TINY}:{path}")

    assert loaded.spec == f"{TINY}:{os.path.abspath(path)}"
    assert loaded.arch == TINY
    assert_same_weights(weights(loaded), load_file(path))


def test_safetensors_checkpoint_round_trip(tmp_path: Path) -> None:
    original = weights(load_clip(f"random:{TINY}@7"))
    save_file(original, tmp_path / "tiny.safetensors")

    assert_same_weights(weights(load_clip(f"{TINY}:{tmp_path / 'tiny.safetensors'}")), original)


def test_torch_training_checkpoint_round_trip(tmp_path: Path) -> None:
    # open_clip's trainer wraps the weights in 'state_dict' with DistributedDataParallel names.
    original = weights(load_clip(f"random:{TINY}@7"))
    wrapped = {f"module.{key}": value for key, value in original.items()}
    torch.save({"epoch": 3, "name": "run", "state_dict": wrapped}, tmp_path / "epoch_3.pt")

    assert_same_weights(weights(load_clip(f"{TINY}:{tmp_path / 'epoch_3.pt'}")), original)


def test_pickled_objects_are_never_loaded(tmp_path: Path) -> None:
    original = weights(load_clip(f"random:{TINY}"))
    torch.save({"state_dict": original, "extra": NotATensor()}, tmp_path / "unsafe.pt")

    with pytest.raises(NeuronAttackError, match="pickles objects other than tensors"):
        load_clip(f"{TINY}:{tmp_path / 'unsafe.pt'}")


def test_checkpoint_for_another_architecture_is_refused(tmp_path: Path) -> None:
    state = weights(load_clip(f"random:{TINY}"))
    state.pop("visual.proj")
    state["visual.extra"] = torch.zeros(1)
    save_file(state, tmp_path / "other.safetensors")

    with pytest.raises(NeuronAttackError, match=r"1 missing \(e\.g\. visual\.proj\), 1 unexpected"):
        load_clip(f"{TINY}:{tmp_path / 'other.safetensors'}")


def test_pretrained_tag_loads_from_the_hub_cache_with_its_quick_gelu_and_normalisation(
    monkeypatch: pytest.MonkeyPatch, offline_hub: Path
) -> None:
    tag_cfg = {
        "url": "",
        "hf_hub": "neuronattack-test/tiny-quickgelu/",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "quick_gelu": True,
    }
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY, {"fake_tag": tag_cfg})
    put_in_hub_cache(
        offline_hub,
        "neuronattack-test/tiny-quickgelu",
        {"open_clip_model.safetensors": PARITY_DIR / "open_clip_model.safetensors"},
    )

    loaded = load_clip(f"{TINY}:Fake-Tag")

    assert loaded.spec == f"{TINY}:fake_tag"
    assert isinstance(loaded.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert loaded.preprocess.transforms[-1].mean == (0.5, 0.5, 0.5)
    assert_same_weights(weights(loaded), load_file(PARITY_DIR / "open_clip_model.safetensors"))


def test_hub_repo_loads_from_the_hub_cache(offline_hub: Path) -> None:
    put_in_hub_cache(
        offline_hub,
        "neuronattack-test/parity-tiny",
        {
            "open_clip_config.json": PARITY_DIR / "open_clip_config.json",
            "open_clip_model.safetensors": PARITY_DIR / "open_clip_model.safetensors",
        },
    )

    loaded = load_clip("hf-hub:neuronattack-test/parity-tiny")

    assert loaded.spec == loaded.arch == "hf-hub:neuronattack-test/parity-tiny"
    assert loaded.tokenizer(["a cat"]).shape == (1, 77)
    assert_same_weights(weights(loaded), load_file(PARITY_DIR / "open_clip_model.safetensors"))


@pytest.mark.parametrize(
    ("spec", "suggestion"),
    [
        ("ViT-B-32:openai", "'ViT-B-32:/path/to/open_clip_model.safetensors'"),
        ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "'local-dir:/path/to/repo'"),
    ],
)
def test_missing_download_fails_fast_with_the_way_out(
    offline_hub: Path, spec: str, suggestion: str
) -> None:
    start = time.monotonic()
    with pytest.raises(NeuronAttackError) as caught:
        load_clip(spec)

    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert "could not be downloaded or found in the local Hugging Face cache" in message
    assert suggestion in message
    assert "HF_HUB_OFFLINE=1" in message


@pytest.mark.parametrize(
    ("spec", "suggestion"),
    [
        ("ViT-B-23:openai", "did you mean ViT-B-32"),
        ("random:ViT-B-23", "did you mean ViT-B-32"),
        ("vit-b-32:openai", "did you mean ViT-B-32"),
        ("ViT-B-32:opneai", "did you mean ViT-B-32:openai"),
        ("ViT-S-16:openai", "use 'random:ViT-S-16'"),
        ("ViT-B-32", "'ViT-B-32:openai'"),
        ("ViT-B/32", "'random:ViT-B-32'"),
        ("random:ViT-B-32@one", "'random:ViT-B-32@0'"),
        (f"{TINY}:/no/such/weights.safetensors", "/no/such/weights.safetensors does not exist"),
        ("local-dir:/no/such/folder", "/no/such/folder does not exist"),
        ("/no/such/folder", "/no/such/folder does not exist"),
        (f"random:{TINY_RESNET}", "decomposes only open_clip's own ViT towers"),
        ("hf-hub:", "'hf-hub:org/name'"),
        ("  ", "spec is empty"),
    ],
)
def test_bad_specs_get_one_sentence_saying_what_to_do(spec: str, suggestion: str) -> None:
    with pytest.raises(NeuronAttackError) as caught:
        load_clip(spec)

    message = str(caught.value)
    assert suggestion in message
    assert "\n" not in message


def test_bare_checkpoint_file_asks_for_its_architecture() -> None:
    path = PARITY_DIR / "open_clip_model.safetensors"
    with pytest.raises(NeuronAttackError, match="name its architecture"):
        load_clip(str(path))


def test_no_false_random_init_warning_when_weights_are_loaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        load_clip(str(PARITY_DIR))
    assert "initialized randomly" not in caplog.text


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NeuronAttackError, match="has no open_clip_config.json"):
        load_clip(str(tmp_path))


def test_folder_with_several_checkpoints_asks_which(tmp_path: Path) -> None:
    shutil.copy(PARITY_DIR / "open_clip_config.json", tmp_path)
    for name in ("a.safetensors", "b.safetensors"):
        shutil.copy(PARITY_DIR / "open_clip_model.safetensors", tmp_path / name)

    with pytest.raises(NeuronAttackError, match="holds a.safetensors, b.safetensors"):
        load_clip(f"local-dir:{tmp_path}")


@pytest.mark.parametrize(
    ("spec", "slug"),
    [
        ("ViT-B-32:openai", "ViT-B-32_openai"),
        ("ViT-B/32", "ViT-B_32"),
        ("hf-hub:org/name", "hf-hub_org_name"),
        ("random:ViT-B-32@0", "random_ViT-B-32_0"),
        ("local-dir:/data/models/clip", "local-dir_data_models_clip"),
    ],
)
def test_spec_slug_is_a_safe_folder_name(spec: str, slug: str) -> None:
    assert spec_slug(spec) == slug


def test_long_spec_slugs_stay_short_and_distinct() -> None:
    a = spec_slug("ViT-B-32:/" + "x" * 200 + "/a.pt")
    b = spec_slug("ViT-B-32:/" + "x" * 200 + "/b.pt")

    assert a != b
    assert len(a) <= 80 and len(b) <= 80
    assert a.startswith("ViT-B-32_xxx")


def test_top_level_load_clip_is_the_factory() -> None:
    import neuronattack

    assert neuronattack.load_clip is load_clip
    with pytest.raises(AttributeError):
        neuronattack.no_such_thing  # noqa: B018
