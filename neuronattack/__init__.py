"""neuronattack: semantic adversarial images for CLIP, found by reading the model's own neurons."""

__version__ = "0.1.0"
