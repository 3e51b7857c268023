"""Loading the CLIP models neuronattack decomposes."""

from neuronattack.models.clip import LoadedClip, load_clip, spec_slug

__all__ = ["LoadedClip", "load_clip", "spec_slug"]
