"""neuronattack: semantic adversarial images for CLIP, found by reading the model's own neurons."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import neuronattack` (and the CLI's --help) does not pay for torch and open_clip.
    if name == "load_clip":
        from neuronattack.models.clip import load_clip

        return load_clip
    raise AttributeError(f"module 'neuronattack' has no attribute {name!r}")


__all__ = ["load_clip"]
