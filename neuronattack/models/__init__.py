"""Loading the CLIP models neuronattack decomposes."""

from neuronattack.models.loaded import LoadedClip


def __getattr__(name: str):
    # Lazy, so the light modules here (hub, loaded, checking) do not pay for open_clip.
    if name in ("load_clip", "spec_slug"):
        from neuronattack.models import clip

        return getattr(clip, name)
    raise AttributeError(f"module 'neuronattack.models' has no attribute {name!r}")


__all__ = ["LoadedClip", "load_clip", "spec_slug"]
