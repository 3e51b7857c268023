"""The texts TextSpan explains heads with: the shipped pool, the toy world's words, or a file.

Every text may carry a role (the ``[role]`` group it is listed under): ``debias --role`` and
``retrieve --role`` pick heads by the roles of their texts. Format and provenance of the shipped
pool: ``texts/README.md`` next to this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neuronattack.errors import NeuronAttackError
from neuronattack.neurons.vocabulary import word_list_hash

POOL_DIR = Path(__file__).resolve().parent / "texts"
DEFAULT_POOL = POOL_DIR / "descriptions.txt"
POOL_SPECS = ("default", "toy")


@dataclass(frozen=True)
class TextPool:
    texts: tuple[str, ...]
    roles: tuple[str, ...]  # one per text; "" where the pool gives none
    source: str
    hash: str  # of the texts, in order (the text-encoding cache key)


def parse_pool(text: str, source: str) -> TextPool:
    """A pool from the file format in ``texts/README.md``."""
    texts, roles, role = [], [], ""
    for number, line in enumerate(text.splitlines(), start=1):
        entry = " ".join(line.split("#", 1)[0].split())
        if not entry:
            continue
        if entry.startswith("[") and entry.endswith("]"):
            role = entry[1:-1].strip().lower()
            if not role:
                raise NeuronAttackError(f"{source} line {number}: a role line needs a name, "
                                        "e.g. [colour].")
            continue
        if entry not in texts:
            texts.append(entry)
            roles.append(role)
    if len(texts) < 2:
        raise NeuronAttackError(f"The text pool {source} has {len(texts)} text(s); TextSpan needs "
                                "at least 2 (one description per line).")
    return TextPool(tuple(texts), tuple(roles), source, word_list_hash(texts))


def toy_pool() -> TextPool:
    """The words the toy CLIP was trained on (``drawable_words``), with the world's kinds as
    roles; its other vocabulary words all embed alike (their tokens were never trained)."""
    from neuronattack.toy.vocabulary import drawable_words
    from neuronattack.toy.world import (
        BACKGROUNDS,
        CLASSES,
        COLOURS,
        COUNT_WORDS,
        PATTERNS,
        PLURALS,
        PROPS,
        WEATHERS,
    )

    kinds = {
        "class": {*CLASSES, *PLURALS.values()},
        "colour": set(COLOURS),
        "pattern": {*PATTERNS, *PATTERNS.values()},
        "background": set(BACKGROUNDS),
        "prop": set(PROPS),
        "weather": set(WEATHERS),
        "count": set(COUNT_WORDS.values()),
    }

    def role(word: str) -> str:
        if word in ("sign", "letter", "number") or word.startswith(("letter ", "number ")):
            return "sign"
        return next((kind for kind, words in kinds.items() if word in words), "other")

    words = drawable_words()
    lines = [line for word in words for line in (f"[{role(word)}]", word)]
    return parse_pool("\n".join(lines), "toy")


def load_text_pool(spec: str) -> TextPool:
    """``default`` (shipped descriptions), ``toy`` (the toy world's words) or a file path."""
    if spec == "default":
        return parse_pool(DEFAULT_POOL.read_text(encoding="utf-8"), "default")
    if spec == "toy":
        return toy_pool()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise NeuronAttackError(
            f"Text pool {spec!r} is neither {' nor '.join(POOL_SPECS)} nor a file; give a text "
            "file with one description per line (see neuronattack/heads/texts/README.md)."
        )
    try:
        return parse_pool(path.read_text(encoding="utf-8-sig"), str(path))
    except UnicodeDecodeError as error:
        raise NeuronAttackError(f"Cannot read {path} as UTF-8 ({error}).") from error


def default_pool_spec(clip_spec: str) -> str:
    """``toy`` for the toy CLIP (it only knows its world's words), ``default`` otherwise."""
    return "toy" if clip_spec == "toy" or clip_spec.startswith("toy:") else "default"
