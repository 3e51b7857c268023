"""One place that says whether a number, a spec or a path is acceptable, before any work starts.

The CLI, the campaign config and the Python API call the same checks, so a value refused by one is
refused by all, with the same words. Each value check returns what is wrong (``"must be a
positive integer"``) or None: the campaign config collects every problem with its line, while
:func:`require` turns one into a :class:`NeuronAttackError` for the CLI and the library.

Nothing here loads a model or reads an image. Spec checks live beside the parsers they use
(``models.clip.clip_spec_problem``, ``models.generators.generator_spec_problem``,
``neurons.vocabulary.vocabulary_spec_problem``, ``attack.setup.checker_spec_problem`` and
``class_set_problem``, ``writing.writer_spec_problem``), in the same form, through
:func:`parser_refusal`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from neuronattack.errors import NeuronAttackError

Check = Callable[[object], str | None]

# Images per arm (attack --n, campaign n): every image is rendered and judged, so a larger number
# is a typo (10**12 would only die later of MemoryError while planning seeds).
MAX_IMAGES_PER_ARM = 100_000
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_int(value: object) -> str | None:
    return None if _is_int(value) and value > 0 else "must be a positive integer"


def non_negative_int(value: object) -> str | None:
    return None if _is_int(value) and value >= 0 else "must be an integer >= 0"


def images_per_arm(value: object) -> str | None:
    ok = _is_int(value) and 0 < value <= MAX_IMAGES_PER_ARM
    return None if ok else f"must be an integer from 1 to {MAX_IMAGES_PER_ARM:,}"


def percentile(value: object) -> str | None:
    ok = _is_number(value) and 0 < value <= 100
    return None if ok else "must be a number above 0 and at most 100"


def non_negative(value: object) -> str | None:
    return None if _is_number(value) and value >= 0 else "must be a number >= 0"


def device(value: object) -> str | None:
    ok = isinstance(value, str) and _DEVICE.fullmatch(value.strip()) is not None
    return None if ok else "must be auto, cpu, cuda, cuda:N or mps"


def existing_folder(value: object) -> str | None:
    ok = value is None or Path(str(value)).expanduser().is_dir()
    return None if ok else "must be an existing folder"


def parser_refusal(parse: Callable[[str], object], value: object) -> str | None:
    """What a loader's own spec parser (one that loads nothing) finds wrong with ``value``, in
    our form: the spec checks beside each parser (``models.clip.clip_spec_problem``, …) use it."""
    if not isinstance(value, str):
        return "must be a string"
    try:
        parse(value)
    except NeuronAttackError as error:
        return f"is not usable ({str(error).rstrip('.')})"
    return None


def require(option: str, value: object, check: Check) -> None:
    """Raise ``"{option} {what is wrong}, got {value}."`` when ``check`` refuses ``value``."""
    wrong = check(value)
    if wrong:
        shown = "" if repr(value) in wrong or f"'{value}'" in wrong else f", got {value!r}"
        raise NeuronAttackError(f"{option} {wrong}{shown}.")


def require_all(checks: Sequence[tuple[str, object, Check]]) -> None:
    """Every ``(option, value, check)``; the first refusal is raised."""
    for option, value, check in checks:
        require(option, value, check)


# AttackSettings field -> (the CLI option that sets it, its check); campaign keys use the same.
ATTACK_NUMBERS: dict[str, tuple[str, Check]] = {
    "n": ("--n", images_per_arm),
    "n_neurons": ("--neurons", positive_int),
    "n_words": ("--words", positive_int),
    "similarity_percentile": ("--similarity-percentile", percentile),
}


def attack_settings(settings) -> None:
    """The numbers of an ``AttackSettings``: zero neurons or words would silently turn the
    method into its source-only baseline, so they are refused like any other bad number."""
    require_all([(option, getattr(settings, name), check)
                 for name, (option, check) in ATTACK_NUMBERS.items()])


def writable_folder(path: Path, option: str = "--out") -> None:
    """``path`` is, or can be made, a folder we may write in; nothing is created here.

    The nearest existing ancestor decides: it must be a folder we can write to (a file in the way,
    ``/proc``, a read-only mount are refused now rather than after hours of work).
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise NeuronAttackError(f"{option} {path} is a file; give a folder.")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise NeuronAttackError(
            f"{option} {path} cannot be created: {existing} is a file, not a folder."
        )
    if not os.access(existing, os.W_OK | os.X_OK) or _read_only_mount(existing):
        raise NeuronAttackError(
            f"{option} {path} cannot be written: {existing} is not writable; choose another folder."
        )


def _read_only_mount(folder: Path) -> bool:
    """True on read-only file systems (``os.access`` answers yes to root there and on /proc)."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False
    read_only = bool(stats.f_flag & os.ST_RDONLY)
    # /proc and /sys accept no new files whatever their flags say.
    pseudo = str(folder.resolve()).split(os.sep)[1:2] in (["proc"], ["sys"])
    return read_only or pseudo

