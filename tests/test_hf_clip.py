"""transformers CLIPModel checkpoints load as open_clip models with the same features."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import perturb, random_images
from PIL import Image
from safetensors.torch import load_file, save_file
from test_load_clip import put_in_hub_cache
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, SiglipConfig, SiglipModel

import neuronattack.lens as lens
from neuronattack.errors import NeuronAttackError
from neuronattack.models import load_clip
from neuronattack.models.generators import clip_tokenizer
from neuronattack.models.hf_clip import build_from_transformers

TEXTS = ["a photo of a cat", "A DOG on the beach, at night!", "", "<script>alert(1)</script>"]


def tiny_config(act: str = "quick_gelu", eps: float = 1e-5) -> CLIPConfig:
    return CLIPConfig(
        projection_dim=24,
        text_config={"hidden_size": 32, "intermediate_size": 80, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "hidden_act": act, "layer_norm_eps": eps},
        vision_config={"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3,
                       "num_attention_heads": 3, "image_size": 32, "patch_size": 8,
                       "hidden_act": act, "layer_norm_eps": eps},
    )


def random_hf_clip(config: CLIPConfig, seed: int = 0) -> CLIPModel:
    """A random CLIPModel whose LayerNorm scales and every bias are pushed off 1 and 0."""
    torch.manual_seed(seed)
    return perturb(CLIPModel(config).eval(), seed + 1, lambda name: "norm" in name)


def assert_same_features(loaded_model, tokenizer, hf: CLIPModel, images: torch.Tensor) -> None:
    tokens = tokenizer(TEXTS)
    with torch.no_grad():
        image_ours = loaded_model.encode_image(images)
        image_theirs = hf.get_image_features(pixel_values=images).pooler_output
        text_ours = loaded_model.encode_text(tokens)
        text_theirs = hf.get_text_features(input_ids=tokens).pooler_output
    torch.testing.assert_close(image_ours, image_theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(text_ours, text_theirs, rtol=0, atol=1e-5)
    assert image_ours.abs().max() > 0.1 and text_ours.abs().max() > 0.1  # not vacuous


@pytest.mark.parametrize(("act", "eps"), [("quick_gelu", 1e-5), ("gelu", 1e-6)])
def test_saved_clip_model_folder_gives_transformers_features(tmp_path, act, eps):
    hf = random_hf_clip(tiny_config(act, eps))
    hf.save_pretrained(tmp_path / "clip")

    for spec in (str(tmp_path / "clip"), f"hf:{tmp_path / 'clip'}"):
        loaded = load_clip(spec)
        assert loaded.spec == f"hf:{tmp_path / 'clip'}"
        gelu = loaded.model.visual.transformer.resblocks[0].mlp.gelu
        assert type(gelu).__name__ == ("QuickGELU" if act == "quick_gelu" else "GELU")
        assert loaded.model.visual.ln_pre.eps == eps
        assert_same_features(loaded.model, loaded.tokenizer, hf, random_images(3, 32))


def test_the_lens_decomposes_a_converted_model_exactly(tmp_path):
    random_hf_clip(tiny_config()).save_pretrained(tmp_path / "clip")
    visual = load_clip(f"hf:{tmp_path / 'clip'}").model.visual
    images = random_images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(lens.decompose(visual, images).total(), visual(images),
                                   rtol=0, atol=1e-5)


@pytest.mark.slow
def test_vit_b32_sized_clip_model_gives_transformers_features():
    config = CLIPConfig()  # transformers' defaults are ViT-B/32's sizes
    assert (config.vision_config.hidden_size, config.vision_config.patch_size) == (768, 32)
    hf = random_hf_clip(config)
    model, tokenizer = build_from_transformers(config.to_dict(), hf.state_dict(), "b32")
    assert model.visual.proj.shape == (768, 512) and model.text_projection.shape == (512, 512)
    assert_same_features(model, tokenizer, hf, random_images(2, 224))


def test_tokenizer_matches_transformers_clip_tokenizer():
    hf = random_hf_clip(tiny_config())
    model, tokenizer = build_from_transformers(hf.config.to_dict(), hf.state_dict(), "tiny")
    ours = tokenizer(TEXTS)
    theirs = clip_tokenizer()(TEXTS, padding="max_length", max_length=77, truncation=True,
                              return_tensors="pt").input_ids
    for row_ours, row_theirs in zip(ours, theirs, strict=True):
        end = int(row_theirs.argmax()) + 1  # up to and including end-of-text; padding differs
        assert torch.equal(row_ours[:end], row_theirs[:end]) and row_ours[end:].eq(0).all()


def test_processor_config_sets_normalisation(tmp_path):
    random_hf_clip(tiny_config()).save_pretrained(tmp_path / "clip")
    processor = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "resample": 2}
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps(processor))
    preprocess = load_clip(str(tmp_path / "clip")).preprocess
    assert preprocess.transforms[-1].mean == (0.5, 0.5, 0.5)
    assert preprocess.transforms[0].interpolation.value == "bilinear"
    assert preprocess(Image.new("RGB", (60, 40))).shape == (3, 32, 32)
    # A processor that resizes larger than it crops, as some fine-tuned CLIPs do, against
    # transformers' own CLIPImageProcessor on the same image.
    processor |= {"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32},
                  "resample": 3}
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps(processor))
    preprocess = load_clip(str(tmp_path / "clip")).preprocess
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8))
    theirs = CLIPImageProcessor(**processor)(images=image, return_tensors="pt").pixel_values[0]
    # 7e-5 measured (resizing straight to 32 gives 0.77): PIL and torchvision resample alike.
    assert (preprocess(image) - theirs).abs().mean() < 1e-3


def test_hub_repo_loads_from_the_hub_cache(tmp_path, offline_hub):
    hf = random_hf_clip(tiny_config())
    hf.save_pretrained(tmp_path / "clip")
    put_in_hub_cache(offline_hub, "neuronattack-test/tiny-hf-clip",
                     {name: tmp_path / "clip" / name for name in ("config.json",
                                                                  "model.safetensors")})
    loaded = load_clip("hf:neuronattack-test/tiny-hf-clip")
    assert loaded.spec == "hf:neuronattack-test/tiny-hf-clip"
    assert_same_features(loaded.model, loaded.tokenizer, hf, random_images(2, 32))


def test_missing_hub_repo_fails_fast_with_the_way_out(offline_hub):
    start = time.monotonic()
    with pytest.raises(NeuronAttackError, match=r"'hf:/path/to/repo'.*HF_HUB_OFFLINE=1"):
        load_clip("hf:openai/clip-vit-base-patch32")
    assert time.monotonic() - start < 5


def test_siglip_is_refused_naming_its_attention_pooling(tmp_path):
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2}
    SiglipModel(SiglipConfig(text_config=tiny, vision_config=tiny | {"image_size": 32,
                                                                     "patch_size": 8})
                ).save_pretrained(tmp_path / "siglip")
    with pytest.raises(NeuronAttackError) as caught:
        load_clip(f"hf:{tmp_path / 'siglip'}")
    message = str(caught.value)
    assert "siglip" in message and "attention-pooling head" in message and "\n" not in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c, s: c["vision_config"].update(hidden_act="gelu_new"),
         "activation\\(s\\) gelu_new, quick_gelu"),
        (lambda c, s: c["text_config"].update(vocab_size=32000),
         "supports CLIP's own BPE only"),
        (lambda c, s: c.update(model_type="owlvit"), "transformers owlvit model"),
        (lambda c, s: s.update({"vision_model.head.probe": torch.zeros(3)}),
         "1 weight\\(s\\) open_clip's CLIP has no place for \\(e.g. vision_model.head.probe\\)"),
        (lambda c, s: s.pop("vision_model.encoder.layers.1.self_attn.k_proj.bias"),
         "layers.1.self_attn.k_proj.bias is missing"),
    ],
)
def test_unsupported_checkpoints_are_refused_in_one_line(tmp_path, change, message):
    random_hf_clip(tiny_config()).save_pretrained(tmp_path / "clip")
    config = json.loads((tmp_path / "clip" / "config.json").read_text())
    state = load_file(tmp_path / "clip" / "model.safetensors")
    change(config, state)
    (tmp_path / "clip" / "config.json").write_text(json.dumps(config))
    save_file(state, tmp_path / "clip" / "model.safetensors")
    with pytest.raises(NeuronAttackError, match=message) as caught:
        load_clip(f"hf:{tmp_path / 'clip'}")
    assert "\n" not in str(caught.value)


def test_folder_without_weights_is_refused(tmp_path: Path):
    random_hf_clip(tiny_config()).save_pretrained(tmp_path / "clip")
    (tmp_path / "clip" / "model.safetensors").unlink()
    with pytest.raises(NeuronAttackError, match="needs config.json and one of model.safetensors"):
        load_clip(f"hf:{tmp_path / 'clip'}")


def test_analyze_builds_an_atlas_of_a_clip_model_folder(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from conftest import write_class_folders

    from neuronattack.cli import main
    from neuronattack.models.zeroshot import class_embeddings
    from neuronattack.neurons.atlas import Atlas

    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    random_hf_clip(tiny_config()).save_pretrained(tmp_path / "clip")
    images = write_class_folders(tmp_path / "images", ("cat", "dog"), 3)
    (tmp_path / "words.txt").write_text("cat\ndog\nsky\nwater\ngrass\nball\nred\nnight\n")
    result = CliRunner().invoke(main, [
        "analyze", "--clip", f"hf:{tmp_path / 'clip'}", "--images", str(images), "--layers", "1",
        "--out", str(tmp_path / "atlas"), "--top-k", "3", "--words", str(tmp_path / "words.txt"),
        "--nonzeros", "3", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    atlas = Atlas.load(tmp_path / "atlas")
    assert atlas.model == f"hf:{tmp_path / 'clip'}"
    assert len(atlas.directions[1].neurons) == 96 and atlas.card(1, 0).words
    classes = class_embeddings(load_clip(f"hf:{tmp_path / 'clip'}"), ["cat", "dog"])
    assert classes.shape == (2, 24) and torch.allclose(classes.norm(dim=-1), torch.ones(2))
