"""What every loader that reads the Hugging Face hub or its cache shares: the cache-first fetch,
the reason a download gave nothing, in one short line, and the device a model runs on; and what
their spec parsers share: the prefixes, paths as the user wrote them, typo hints."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# torch and huggingface_hub are imported where used: the text writers import this module and are
# loaded by commands that never touch a model.

HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"


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


class HubUnavailable(Exception):
    """The cache does not hold a repo and the hub did not give it; ``str()`` is the one-line
    reason, for the caller's own message that says what to do instead."""


def cached_or_downloaded(
    repo_id: str, probe_file: str, download: Callable[..., str | os.PathLike[str]]
) -> Path:
    """A hub repo's local folder: the cache's snapshot when it holds one, else a download.

    The cache is tried first (``download(local_files_only=True)``) so a pre-populated cache works
    with no connection. Before any download one HEAD request for ``probe_file`` checks that the
    hub answers and has the repo, so an unreachable hub or a wrong repo id fails in moments
    instead of after the hub client's retries. ``download`` is ``snapshot_download`` or a
    library's own downloader with the repo already bound; raises :class:`HubUnavailable`.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        return Path(download(local_files_only=True))
    # The hub client raises many types for "not cached" (entry, repo, revision not found).
    except Exception:
        pass
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, probe_file))
        return Path(download())
    # The hub client raises many types (DNS, HTTP, auth, missing repo); all mean the same here.
    except Exception as error:
        if is_offline(error):
            raise HubUnavailable("HF_HUB_OFFLINE is set and the cache does not hold it") from None
        raise HubUnavailable(first_line(error)) from error


def resolve_device(device: str) -> str:
    """``"auto"``: CUDA when available, else the CPU; any other name is returned as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def absolute_path(path_text: str) -> Path:
    """Absolute without resolving symlinks, so the spec keeps the path the user chose."""
    return Path(os.path.abspath(os.path.expanduser(path_text)))


def close_matches(word: str, choices: list[str]) -> list[str]:
    """Up to three choices near ``word``, ignoring case (users type ``vit-b-32``)."""
    by_lower = {choice.lower(): choice for choice in choices}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=3, cutoff=0.6)
    return [by_lower[match] for match in matches]


@contextmanager
def fresh_rng(seed: int) -> Iterator[None]:
    """Seed the CPU RNG for a model's initialisers without disturbing the caller's RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
