"""The lens against slow references: the traced pass, first- and second-order decompositions."""

from __future__ import annotations

import open_clip
import pytest
import torch
from conftest import build_tiny_clip, in_float64, random_images

from neuronattack.errors import NeuronAttackError
from neuronattack.lens.brute_force import second_order_brute_force
from neuronattack.lens.first_order import decompose, mean_ablate, mean_pieces
from neuronattack.lens.neuron_effects import second_order
from neuronattack.lens.traced_pass import trace

# Variants that exercise every folded term: LayerScale, QuickGELU, a deeper stack.
VARIANTS = {
    "plain": {},
    "layerscale-quickgelu": {"ls_init_value": 0.5, "quick_gelu": True, "seed": 3},
    "deeper": {"layers": 6, "width": 48, "head_width": 12, "seed": 5},
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request):
    return build_tiny_clip(**VARIANTS[request.param])


@pytest.fixture(scope="module")
def vit_b_32():
    torch.manual_seed(0)
    return open_clip.create_model("ViT-B-32").eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def test_trace_equals_encode_image(variant):
    images = random_images(5)
    with torch.no_grad():
        record = trace(variant.visual, images, mlp_layers=(1, 2))
        expected = variant.encode_image(images)
    assert relative_error(record.embedding, expected) <= 1e-5
    assert set(record.attn_cls_rows) == set(range(2, len(variant.visual.transformer.resblocks)))
    assert set(record.mlp_post) == {1, 2}
    rows = record.attn_cls_rows[2]
    assert torch.allclose(rows.sum(-1), torch.ones_like(rows[..., 0]), atol=1e-6)


@pytest.mark.slow
def test_trace_equals_encode_image_vit_b_32(vit_b_32):
    images = random_images(2, size=224)
    with torch.no_grad():
        record = trace(vit_b_32.visual, images, mlp_layers=(8, 9, 10))
        expected = vit_b_32.encode_image(images)
    assert relative_error(record.embedding, expected) <= 1e-5
    assert record.mlp_post[9].shape == (2, 50, 3072)
    assert record.attn_cls_rows[11].shape == (2, 12, 50)


def test_trace_records_attention_rows_like_multihead_attention(tiny_clip):
    """The CLS row we compute equals the weights nn.MultiheadAttention itself returns."""
    images = random_images(3)
    visual = tiny_clip.visual
    with torch.no_grad():
        record = trace(visual, images, mlp_layers=(0,))
        x = visual._embeds(images)
        x = visual.transformer.resblocks[0](x)
        block = visual.transformer.resblocks[1]
        normed = block.ln_1(x)
        _, weights = block.attn(normed, normed, normed, need_weights=True,
                                average_attn_weights=False)
    assert torch.allclose(record.attn_cls_rows[1], weights[:, :, 0], atol=1e-6)


@pytest.mark.parametrize("convention", ["centred", "reference"])
def test_first_order_pieces_sum_to_embedding(variant, convention):
    images = random_images(4)
    with torch.no_grad():
        pieces = decompose(variant.visual, images, convention)
        embedding = variant.encode_image(images)
    expected = embedding if convention == "centred" else embedding / embedding.norm(dim=-1,
                                                                                    keepdim=True)
    assert relative_error(pieces.total(), expected) <= 1e-5


def test_first_order_centred_piece_depends_on_itself_only(tiny_clip):
    """Centred convention: a piece is (γ ⊙ centre(c) / σ) · P, computed from c alone."""
    images = random_images(2)
    visual = tiny_clip.visual
    with torch.no_grad():
        record = trace(visual, images, first_order=True)
        pieces = decompose(visual, images, "centred")
        mlp_2 = record.mlp_cls[:, 2]
        centred = mlp_2 - mlp_2.mean(-1, keepdim=True)
        expected = (visual.ln_post.weight * centred / record.ln_post_scale[:, None]) @ visual.proj
    assert torch.allclose(pieces.mlps[:, 2], expected, atol=1e-6)
    assert torch.allclose(pieces.bias[0], visual.ln_post.bias @ visual.proj)


def test_first_order_matches_official_code(parity):
    model, data = parity
    images = torch.from_numpy(data["images"])
    with torch.no_grad():
        pieces = decompose(model.visual, images, "reference")
    mlps = torch.cat([pieces.embed[:, None], pieces.mlps], dim=1)
    expected_mlps = torch.from_numpy(data["fo_mlps"])
    expected_attn = torch.from_numpy(data["fo_attn"])
    assert (mlps - expected_mlps).abs().max() <= 1e-5 * expected_mlps.abs().max()
    assert (pieces.attn - expected_attn).abs().max() <= 1e-5 * expected_attn.abs().max()


def test_mean_ablation_replaces_only_the_named_pieces(tiny_clip):
    images = random_images(6)
    with torch.no_grad():
        pieces = decompose(tiny_clip.visual, images)
    means = mean_pieces(pieces)
    untouched = mean_ablate(pieces, means)
    assert torch.equal(untouched.total(), pieces.total())
    ablated = mean_ablate(pieces, means, mlp_layers=(1, 3), attn_layers=(0,))
    change = (means.mlps[:, [1, 3]] - pieces.mlps[:, [1, 3]]).sum(1) + (
        means.attn[:, 0] - pieces.attn[:, 0]
    ).sum((1, 2))
    assert torch.allclose(ablated.total(), pieces.total() + change, atol=1e-5)
    # Ablating with the mean of a single image is the identity.
    single = decompose(tiny_clip.visual, images[:1])
    assert torch.allclose(
        mean_ablate(single, mean_pieces(single), (0, 1, 2, 3), (0, 1, 2, 3)).total(),
        single.total(),
    )


@pytest.mark.parametrize("convention", ["centred", "reference"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_second_order_equals_brute_force_float64(variant, convention, layer):
    images = random_images(3, dtype=torch.float64)
    with in_float64(variant) as model, torch.no_grad():
        fast = second_order(model, images, layer, convention=convention)
        slow = second_order_brute_force(model.visual, images, layer, convention=convention)
    assert fast.shape == slow.shape == (3, model.visual.transformer.resblocks[0].mlp.c_fc
                                        .out_features, model.visual.output_dim)
    assert (fast - slow).abs().max() <= 1e-10 * slow.abs().max()


def test_second_order_neuron_subset(tiny_clip):
    images = random_images(2)
    neurons = torch.tensor([5, 0, 77])
    with torch.no_grad():
        subset = second_order(tiny_clip, images, 1, neurons=neurons)
        full = second_order(tiny_clip, images, 1)
    assert torch.allclose(subset, full[:, neurons], atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("layer", [8, 10])
def test_second_order_equals_brute_force_vit_b_32(vit_b_32, layer):
    images = random_images(2, size=224, seed=layer)
    neurons = torch.randperm(3072, generator=torch.Generator().manual_seed(layer))[:48]
    with torch.no_grad():
        fast = second_order(vit_b_32, images, layer, neurons=neurons)
        slow = second_order_brute_force(vit_b_32.visual, images, layer, neurons=neurons)
    assert fast.shape == (2, 48, 512)
    assert relative_error(fast, slow) <= 1e-4  # float32, different summation orders


def test_second_order_matches_official_code(parity):
    model, data = parity
    images = torch.from_numpy(data["images"])
    for index, layer in enumerate(data["layers"]):
        with torch.no_grad():
            phi = second_order(model, images, int(layer), convention="reference")
        expected = torch.from_numpy(data["phi"][index])
        assert (phi - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_unsupported_pooling_is_refused():
    model = build_tiny_clip()
    model.visual.pool_type = "avg"
    with pytest.raises(NeuronAttackError, match="average pooling"):
        trace(model.visual, random_images(1), mlp_layers=(0,))
    model = build_tiny_clip()
    model.visual.attn_pool = torch.nn.Identity()
    with pytest.raises(NeuronAttackError, match="attention"):
        second_order(model, random_images(1), 0)
