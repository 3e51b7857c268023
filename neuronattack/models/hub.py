"""What every loader that reads the Hugging Face hub or its cache shares: the reason a download
gave nothing, in one short line, and the device a model runs on."""

from __future__ import annotations

# torch and huggingface_hub are imported where used: the text writers import this module and are
# loaded by commands that never touch a model.


def first_line(error: BaseException, limit: int = 200) -> str:
    """A short reason for a one-sentence message: third-party errors span many lines. Cut at a
    word, never inside one."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"


def is_offline(error: BaseException) -> bool:
    """The hub client refused because HF_HUB_OFFLINE is set: its own message says to unset it,
    the opposite of what is needed here (the cache is what is missing, not the network)."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    return isinstance(error, OfflineModeIsEnabled) or "offline mode is enabled" in str(error)


def resolve_device(device: str) -> str:
    """``"auto"``: CUDA when available, else the CPU; any other name is returned as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
