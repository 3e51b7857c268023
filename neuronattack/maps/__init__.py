"""Maps: where in an image CLIP sees a text, from the lens's exact per-patch pieces.

- ``patch_maps`` / ``explain``: per-patch contributions (summed over the heads of chosen layers)
  projected on a text or on the contrast of two texts; values + rest == the score, exactly.
- ``write_heatmap``: the overlay PNG behind ``neuronattack heatmap``.
- ``class_neurons``, ``neuron_effect_map``, ``neuron_activation_map``: the second paper's
  neuron-based maps, neurons chosen by their atlas words.
- ``evaluate_folder``, ``Tally``: zero-shot segmentation scored against masks
  (``neuronattack segment``); ``write_toy_masks`` makes such a folder from the toy renderer.
- ``write_why_maps``: target-minus-source maps beside attack images.
"""

from neuronattack.maps.heatmap import patch_maps, text_direction, write_heatmap
from neuronattack.maps.neuron_maps import (
    ClassNeurons,
    class_neurons,
    neuron_activation_map,
    neuron_effect_map,
)
from neuronattack.maps.patches import PatchMap, cls_attention_map, explain, patch_contributions
from neuronattack.maps.segment import Tally, evaluate_folder, scan_mask_folder
from neuronattack.maps.why import why_map_path, why_maps, write_why_maps

__all__ = [
    "ClassNeurons",
    "PatchMap",
    "Tally",
    "class_neurons",
    "cls_attention_map",
    "evaluate_folder",
    "explain",
    "neuron_activation_map",
    "neuron_effect_map",
    "patch_contributions",
    "patch_maps",
    "scan_mask_folder",
    "text_direction",
    "why_map_path",
    "why_maps",
    "write_heatmap",
    "write_why_maps",
]
