"""The lens: exact decompositions of an open_clip ViT's image embedding.

- ``trace``: one forward pass recording attention rows, LayerNorm scales and MLP activations.
- ``decompose``: first-order pieces (embedding, MLPs, heads × tokens) that sum to the embedding.
- ``second_order``: each MLP neuron's effect through the later attention heads.
"""

from neuronattack.lens.first_order import (
    FirstOrderPieces,
    decompose,
    first_order_pieces,
    mean_ablate,
    mean_pieces,
)
from neuronattack.lens.neuron_effects import EffectBasis, effect_basis, effect_coords, second_order
from neuronattack.lens.traced_pass import Trace, trace

__all__ = [
    "EffectBasis",
    "FirstOrderPieces",
    "Trace",
    "decompose",
    "effect_basis",
    "effect_coords",
    "first_order_pieces",
    "mean_ablate",
    "mean_pieces",
    "second_order",
    "trace",
]
