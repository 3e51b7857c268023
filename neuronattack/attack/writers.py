"""Writers: from a source class and the attack's chosen words to image descriptions.

The attack (method.md §6) needs sentences that show the source, use as many of the chosen words
as fit, and never name the target or anything the word filter dropped. Two writers share one
contract (:class:`Writer`) and one post-filter (:func:`post_filter`):

- :class:`TemplateWriter` (the default): offline and deterministic per seed. A small role
  classifier (:func:`word_role`) guesses what each word can be in a scene, a phrase builder turns
  the roles into slot contents ("a fluffy red cat", "on the beach", "under the moon"), and a
  template from ``neuronattack/resources/sentence_templates.txt`` puts the slots in order.
- :class:`HFWriter`: a causal LLM from the Hugging Face cache or a local folder, as in the paper,
  whose lines go through the same filter.

Neither writer ever puts a word *into* text in the image (a sign that reads "value", a label, a
caption, quotes): an image that spells a word is a typographic attack, not a semantic one. The
template loader refuses templates that ask for text, and lines that describe text are dropped.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from neuronattack.errors import NeuronAttackError
from neuronattack.models.hub import first_line, resolve_device
from neuronattack.resources import SENTENCE_TEMPLATES

if TYPE_CHECKING:
    import torch

DEFAULT_TEMPLATES = SENTENCE_TEMPLATES
TEMPLATE_PREFIX = "template"
HF_PREFIX = "hf:"

SLOTS = ("subject", "action", "place", "time", "near", "nouns")
MIN_WORDS = 3
MAX_WORDS = 6
# Tries per sentence (fresh random choices each) before a word that never fits safely is dropped.
_ATTEMPTS = 24
_CULPRIT_ATTEMPTS = 4  # per word left out, when looking for the word that keeps failing


def _lexicon(words: str) -> frozenset[str]:
    """A word set written as one space-separated string, which keeps long lexicons readable."""
    return frozenset(words.split())


def _table(prefix: str, words: str) -> dict[str, str]:
    """Each word mapped to the words it follows ("on the" beach)."""
    return dict.fromkeys(words.split(), prefix)


# Words that ask for written text in the image. Templates may not contain them, and a line that
# does is dropped unless the source or a chosen word itself brings the word ("stop sign").
TEXT_WORDS = _lexicon(
    "sign signboard label labeled labelled caption captioned text lettering letter word written "
    "writing inscription inscribed reads says saying spelled spelling logo banner poster "
    "billboard placard plaque typography font slogan graffiti headline"
)
_QUOTED = re.compile(r"[\"“”«»]|(?:^|[\s(])['‘][^'’]+['’](?=$|[\s,.;:!?)])")


@dataclass(frozen=True)
class Sentence:
    """One image description and the chosen words it uses.

    Each word of ``words_used`` appears in ``text`` as given or as a plural ("two elephants" uses
    "elephant"); :func:`contains_word` is the test.
    """

    text: str
    words_used: tuple[str, ...]


class Writer(Protocol):
    """What the attack needs from a writer; ``name`` is a spec :func:`load_writer` reads back."""

    name: str

    def write(
        self,
        source: str,
        words: Sequence[str],
        count: int,
        seed: int,
        forbidden: Collection[str] = (),
    ) -> list[Sentence]:
        """``count`` descriptions that contain ``source`` and no ``forbidden`` word, or an error."""
        ...


def load_writer(spec: str = TEMPLATE_PREFIX, device: str = "auto") -> Writer:
    """The writer a spec names: ``template``, ``template:PATH`` or ``hf:REPO_OR_PATH``.

    ``device`` is where an ``hf:`` model runs; the template writer needs none.
    """
    text = spec.strip()
    if text in ("", TEMPLATE_PREFIX):
        return TemplateWriter()
    if text.startswith(f"{TEMPLATE_PREFIX}:") and text[len(TEMPLATE_PREFIX) + 1 :].strip():
        return TemplateWriter(text[len(TEMPLATE_PREFIX) + 1 :].strip())
    if text.startswith(HF_PREFIX) and text[len(HF_PREFIX) :].strip():
        return HFWriter(text[len(HF_PREFIX) :].strip(), device=device)
    raise NeuronAttackError(
        f"Unknown writer spec '{spec}'; use 'template', 'template:/path/to/templates.txt' or "
        "'hf:REPO_OR_PATH' (a Hugging Face repo id or a local model folder)."
    )


# ---------------------------------------------------------------------------------------------
# Words in text: whole words, any case, plurals included


_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice",
    "goose": "geese", "foot": "feet", "tooth": "teeth", "ox": "oxen", "leaf": "leaves",
    "knife": "knives", "wife": "wives", "life": "lives", "wolf": "wolves", "half": "halves",
    "shelf": "shelves", "loaf": "loaves", "calf": "calves", "thief": "thieves", "cactus": "cacti",
    "fungus": "fungi", "sheep": "sheep", "deer": "deer", "fish": "fish", "moose": "moose",
}  # fmt: skip
# Nouns in -man that are not compounds of "man".
_MAN_NOT_MEN = _lexicon("human german roman shaman talisman caiman cayman ottoman")


def plural(noun: str) -> str:
    """The usual plural of a noun or of a phrase's last word ("box" → "boxes")."""
    head, _, last = noun.rpartition(" ")
    lower = last.lower()
    if lower in _IRREGULAR_PLURALS:
        form = last[: len(last) - len(lower)] + _IRREGULAR_PLURALS[lower]
    elif lower.endswith("man") and len(lower) > 3 and lower not in _MAN_NOT_MEN:
        form = last[:-3] + "men"
    elif re.search(r"[^aeiou]y$", lower):
        form = last[:-1] + "ies"
    elif lower.endswith(("s", "x", "z", "ch", "sh")):
        form = last + "es"
    else:
        form = last + "s"
    return f"{head} {form}" if head else form


def _forms(word: str) -> set[str]:
    """Every written form :func:`contains_word` accepts for one lowercase word.

    Generous on purpose (both "-s" and "-es", "-ves" for "-f"): for forbidden words a false
    match only costs a retry, while a missed plural would let the target through.
    """
    forms = {word, plural(word), f"{word}s", f"{word}es"}
    if re.search(r"[^aeiou]y$", word):
        forms.add(f"{word[:-1]}ies")
    if word.endswith("f"):
        forms.add(f"{word[:-1]}ves")
    if word.endswith("fe"):
        forms.add(f"{word[:-2]}ves")
    return forms


@lru_cache(maxsize=8192)
def _word_pattern(word: str) -> str:
    """A regex for a word or phrase as a whole word, its last word in any plural form."""
    tokens = re.split(r"[\s\-]+", word.strip().lower())
    last = "|".join(sorted((re.escape(form) for form in _forms(tokens[-1])), key=len, reverse=True))
    # Hyphens count as spaces, so "hot-dog" is "hot dog"; apostrophes end a word ("dog's").
    body = r"[\s\-]+".join([*map(re.escape, tokens[:-1]), f"(?:{last})"])
    return rf"(?<!\w){body}(?!\w)"


@lru_cache(maxsize=256)
def _any_word_regex(words: frozenset[str]) -> re.Pattern[str] | None:
    """One compiled regex for many words: forbidden lists run to hundreds of entries."""
    patterns = [_word_pattern(word) for word in sorted(words) if word.strip()]
    return re.compile("|".join(patterns), re.IGNORECASE) if patterns else None


def contains_word(text: str, word: str) -> bool:
    """Whether ``text`` contains ``word`` as a whole word, in any case, or a plural of it.

    ``word`` may be a phrase ("golden retriever"); its last word takes the plural. "dog" is in
    "Dogs", "dog's" and "dog-friendly" but not in "hotdog"; "puppy" is in "puppies".
    """
    if not word.strip():
        return False
    return re.search(_word_pattern(word), text, re.IGNORECASE) is not None


def _without_source(text: str, source: str) -> str:
    """The text with every mention of the source blanked out.

    When a forbidden token is part of the source name (tiger cat → tabby cat forbids "cat") the
    source must still be nameable, so only mentions outside the source name count against a line.
    """
    return re.sub(_word_pattern(source), " ", text, flags=re.IGNORECASE)


def _normalised(forbidden: Collection[str]) -> frozenset[str]:
    """Forbidden words as a hashable set, the key of the compiled-regex cache."""
    return frozenset(" ".join(word.lower().split()) for word in forbidden if word.strip())


def _mentions_forbidden(text: str, source: str, forbidden: frozenset[str]) -> bool:
    regex = _any_word_regex(forbidden)
    return regex is not None and regex.search(_without_source(text, source)) is not None


def post_filter(lines: Iterable[str], source: str, forbidden: Collection[str]) -> list[str]:
    """The lines that name ``source`` and no forbidden word, whitespace-normalised, deduplicated.

    Mentions inside the source name itself are not held against a line (see
    :func:`_without_source`); order is kept and only the first copy of a line (ignoring case).
    """
    forbidden = _normalised(forbidden)
    kept, seen = [], set()
    for line in lines:
        text = " ".join(line.split())
        key = text.lower()
        if not text or key in seen or not contains_word(text, source):
            continue
        if _mentions_forbidden(text, source, forbidden):
            continue
        seen.add(key)
        kept.append(text)
    return kept


def mentions_text(line: str, allowed: Iterable[str] = ()) -> bool:
    """Whether a line asks for written text in the image (a sign, a label, quoted words).

    Words that the source or a chosen word brings ("stop sign", "letter k") are allowed: they are
    the objects asked for, not text the writer added.
    """
    if _QUOTED.search(line):
        return True
    allowed = list(allowed)
    return any(
        contains_word(line, term) and not any(contains_word(phrase, term) for phrase in allowed)
        for term in TEXT_WORDS
    )


def words_in(text: str, words: Iterable[str]) -> tuple[str, ...]:
    """The words that appear in ``text`` (see :func:`contains_word`), in their given order."""
    return tuple(word for word in words if contains_word(text, word))


def usable_words(words: Iterable[str], source: str, forbidden: Collection[str]) -> list[str]:
    """The chosen words a sentence may use: whitespace-normalised, deduplicated (ignoring case),
    without empty entries and without any that contain a forbidden word."""
    forbidden = _normalised(forbidden)
    kept, seen = [], set()
    for word in words:
        text = " ".join(word.split())
        if text and text.lower() not in seen and not _mentions_forbidden(text, source, forbidden):
            seen.add(text.lower())
            kept.append(text)
    return kept


def _check_request(source: str, count: int) -> str:
    """The source name, whitespace-normalised, after the checks every writer makes."""
    name = " ".join(source.split())
    if not name:
        raise NeuronAttackError(
            "The source class name is empty; give the class the image must show, e.g. 'cat'."
        )
    if count < 0:
        raise NeuronAttackError(f"Asked for {count} sentences; ask for 0 or more.")
    return name


# ---------------------------------------------------------------------------------------------
# Roles: what a word can be in a scene, guessed from small lexicons and suffixes


COLOUR = "colour"
PLACE = "place"  # where: "on the beach", "in Paris", "nearby"
TIME = "time"  # when: "at night", "in winter", "today"
NAME = "name"  # a person: "Maria's cat"
DETERMINER = "determiner"  # "my cat", "every cat"
QUANTITY = "quantity"  # "two elephants", "some elephants"
INTENSIFIER = "intensifier"  # "a very small cat"
SUBJECT_PRONOUN = "subject pronoun"  # "a cat they spotted"
OBJECT_PRONOUN = "object pronoun"  # "a cat looking at them"
MODAL = "modal"  # "a cat that might be seen"
PREPOSITION = "preposition"  # "a cat under an elephant"
PREDICATIVE = "predicative"  # adjectives that follow the noun: "a cat asleep"
VERB = "verb"  # "a cat ready to travel"
ADVERB = "adverb"  # "a quietly sleeping cat"
GERUND = "gerund"  # "a sleeping cat", "a cat sleeping"
ADJECTIVE = "adjective"
FUNCTION = "function"  # other closed-class words: kept when a template already says them
NOUN = "noun"  # everything else, and phrases

_COLOURS = _lexicon(
    "red orange yellow green blue purple pink brown black white grey gray gold golden silver "
    "violet crimson scarlet turquoise beige navy maroon teal cyan magenta tan ivory amber bronze "
    "copper olive lime indigo lavender emerald"
)

# Place and time words with the preposition and article they take; "a" becomes "an" as needed.
_PLACES = {
    **_table("on the", "water grass sand road beach shore coast floor ice"),
    **_table(
        "in the",
        "snow sky mud rain fog mist sunshine sunlight moonlight shade darkness "
        "woods jungle desert city countryside wind dark wilderness mountains",
    ),
    **_table(
        "in a",
        "forest field meadow town village valley park garden yard kitchen bedroom "
        "bathroom room office classroom library museum church hospital restaurant "
        "cafe barn garage cave tunnel swamp storm playground studio",
    ),
    **_table(
        "on a",
        "street mountain hill farm bridge stage table bed sofa couch cliff rooftop "
        "roof highway island boat glacier lawn porch balcony",
    ),
    **_table("by the", "ocean sea river lake pond pool waterfall fireplace window"),
    **_table("at the", "market station airport zoo"),
    **_table("at", "home school work"),
    **_table("in", "space"),
    # Adverbs of place stand alone.
    **_table(
        "",
        "nearby outdoors indoors outside inside underwater upstairs downstairs abroad "
        "overhead everywhere somewhere downtown uptown offshore",
    ),
}
_TIMES = {
    **_table(
        "at",
        "night midnight noon dawn dusk sunset sunrise twilight nighttime christmas "
        "halloween easter thanksgiving",
    ),
    **_table("in the", "morning evening afternoon daytime"),
    **_table("in", "winter summer autumn spring"),
    **_table("", "today tonight yesterday tomorrow now again once later"),
}
_CAPITALISED = _lexicon("christmas halloween easter thanksgiving")

# Frequent, unambiguous proper names as the lowercase word list spells them; a capitalised word
# not listed counts as a person's name.
_PLACE_NAMES = _lexicon(
    "paris london rome tokyo berlin madrid moscow venice vienna athens cairo sydney chicago "
    "boston seattle dubai bangkok beijing shanghai mumbai delhi japan india france italy spain "
    "germany england america africa europe asia australia canada mexico brazil egypt russia "
    "ireland scotland greece norway sweden iceland texas california florida hawaii alaska "
    "switzerland netherlands portugal argentina peru kenya morocco vietnam korea antarctica"
)
_FIRST_NAMES = _lexicon(
    "john james david michael robert william thomas charles george paul peter richard daniel "
    "kevin jason brian eric steven chris ryan adam matthew andrew joseph edward henry harry tom "
    "sam alex ben nick tony frank mike dave jim joe tim bob larry gary mary maria sarah anna emma "
    "lisa laura rachel kate amy alice lucy sophie olivia jane susan linda karen nancy helen anne "
    "julia jessica jennifer emily hannah elizabeth margaret martha sophia isabella mia charlotte "
    "amelia harper ella victoria natalie diana"
)
_DETERMINERS = _lexicon("the my your his her its our their this that every each another one")
_QUANTITIES = _lexicon(
    "two three four five six seven eight nine ten twelve dozen hundred thousand million some "
    "many several few these those both various numerous"
)
_INTENSIFIERS = _lexicon("very really quite rather too so super")
_SUBJECT_PRONOUNS = _lexicon("i he she we they you")
_OBJECT_PRONOUNS = _lexicon("me him us them it")
_MODALS = _lexicon("can could will would should may might must shall")
_PREPOSITIONS = _lexicon(
    "under over above below beneath underneath beside behind near among around across along "
    "against atop beyond toward towards upon within past through into onto between"
)
_PREDICATIVES = _lexicon("asleep awake alone alive afloat aglow ablaze adrift ashore")
_FUNCTION_WORDS = _lexicon(
    "a an and or but nor of in on at to for from with by as is are was were be been being "
    "am has have had do does did not no if than then which who whom whose what where when why "
    "how because although though while unless until since about like without despite during "
    "except via per versus yes oh okay please there here just also still even ever never always "
    "often sometimes already almost only all any more most such same other own however therefore "
    "nevertheless nonetheless regardless meanwhile moreover otherwise whereas whether hence thus "
    "anyway indeed perhaps maybe instead unlike"
)
_VERBS = _lexicon(
    "make take go get see come know think look want give use find tell ask work feel try leave "
    "call run play eat sleep swim jump fly sing dance read write walk talk sit stand win pay meet "
    "buy sell build send fall cut drive ride climb catch throw hide fight save help learn teach "
    "grow open close start wait watch listen speak cook wash explore hunt celebrate rest relax "
    "travel dream smile laugh cry hug kiss paint draw chase dig carry pull push lift kick shop "
    "visit escape survive protect collect hold pray vote invest remember forget believe love hope "
    "wonder sail surf ski skate hike camp fish bake shout whisper breathe shine"
)
_ADJECTIVES = _lexicon(
    "big small large little tiny huge giant tall short long wide narrow old new young ancient "
    "modern good bad great fine nice cute pretty ugly happy sad angry calm quiet loud fast slow "
    "quick hot cold warm cool wet dry soft hard smooth rough heavy light bright dark clean dirty "
    "fresh rare wild tame free real fake strange weird odd fancy plain simple royal rich poor "
    "proud brave shy wise mad crazy lazy busy empty full round square flat thin thick fat deep "
    "high low sweet sour bitter ripe raw vast lonely lovely friendly lively elderly holy silly "
    "deadly curly chilly woolly cuddly sparkly wooden frozen broken hidden fallen sunken woven "
    "molten dead gentle fierce noble humble subtle elegant brilliant pleasant distant silent "
    "vibrant radiant urgent different excellent innocent magnificent fragrant abundant"
)
# Words whose suffix would mislead the rules below.
_SUFFIX_NOUNS = _lexicon(
    "family lily italy july belly jelly holly rally ally bully supply reply apply assembly "
    "butterfly dragonfly firefly monopoly fly morning evening building wedding clothing ceiling "
    "nothing something anything everything during spring string thing king ring wing bring "
    "sting swing ding viking pudding darling sibling duckling earring stocking painting drawing "
    "meeting feeling hundred kindred shed"
)
# Unique things take "the"; uncountable ones take no article.
_THE_NOUNS = _lexicon("sun moon sky earth world horizon universe internet equator")
_MASS_NOUNS = _lexicon(
    "water sand snow grass money music information food bread rice milk coffee tea furniture "
    "equipment advice news luggage hair fire smoke ice gold silver wood paper rain wind fog air "
    "love art steam mud dust oil salt sugar butter cheese meat wool cotton silk leather glass "
    "plastic metal stone concrete traffic weather software hardware homework research evidence "
    "knowledge jewelry jewellery garbage trash foliage grain corn wheat hay seaweed chocolate "
    "candy energy darkness sunshine chrome steel iron marble granite brass velvet lace denim "
    "rubber clay"
)
_UNDER_NOUNS = _lexicon(
    "sun moon cloud clouds star stars rainbow tree trees bridge umbrella lamp ceiling"
)
# Patterns and surfaces belong to the object: "a cat with stripes".
_WITH_NOUNS = _lexicon("stripes dots spots checks patches scales feathers fur wings horns")
_IRREGULAR_PLURAL_FORMS = frozenset(_IRREGULAR_PLURALS.values()) - {"sheep", "deer", "fish"}

_ADJECTIVE_SUFFIXES = ("ous", "ful", "ive", "al", "ic", "less", "able", "ible", "ish", "ese")
# "-y" nouns the adjective rule would otherwise take: "quality", "story", "energy", "agency".
_Y_NOUN_ENDINGS = ("ity", "ogy", "rgy", "egy", "phy", "ory", "ary", "ery", "cy")


def word_role(word: str) -> str:
    """The role a chosen word takes in a sentence, by light heuristics (documented here).

    Phrases are nouns. Capitalised words are names (of places when listed). Lowercase words are
    looked up in small lexicons (colours, places and times with their prepositions, frequent
    first and place names, determiners, numbers, pronouns, modals, spatial prepositions,
    common verbs and adjectives); the rest go by suffix: ``-ly`` adverbs, ``-ing`` gerunds,
    ``-ed`` participles and ``-ous -ful -ive -al -ic -less -able -ible -ish -ese -y`` adjectives,
    ``-ize -ify`` verbs. Everything else is a noun, which is the safe guess: a noun placed as a
    modifier reads as a compound ("a city cat") and an unknown word placed as a noun still parses.
    """
    if " " in word:
        return NOUN
    lower = word.lower()
    if word[:1].isupper():
        return PLACE if lower in _PLACE_NAMES else TIME if lower in _TIMES else NAME
    for role, lexicon in _LEXICONS:
        if lower in lexicon:
            return role
    if lower in _SUFFIX_NOUNS:
        return NOUN
    if lower.endswith("ly") and len(lower) > 4:
        return ADVERB
    if lower.endswith("ing") and len(lower) > 5:
        return GERUND
    if lower.endswith("ed") and not lower.endswith("eed") and len(lower) > 4:
        return ADJECTIVE
    if lower.endswith(_ADJECTIVE_SUFFIXES) and len(lower) > 4:
        return ADJECTIVE
    if re.search(r"[^aeiouy]y$", lower) and len(lower) > 3 and not lower.endswith(_Y_NOUN_ENDINGS):
        return ADJECTIVE
    if lower.endswith(("ize", "ify")) and len(lower) > 5:
        return VERB
    return NOUN


# First match wins: "orange" is a colour before a noun, "spring" a season before anything else.
_LEXICONS: tuple[tuple[str, frozenset[str]], ...] = (
    (COLOUR, _COLOURS),
    (TIME, frozenset(_TIMES)),
    (PLACE, frozenset(_PLACES) | _PLACE_NAMES),
    (NAME, _FIRST_NAMES),
    (DETERMINER, _DETERMINERS),
    (QUANTITY, _QUANTITIES),
    (INTENSIFIER, _INTENSIFIERS),
    (SUBJECT_PRONOUN, _SUBJECT_PRONOUNS),
    (OBJECT_PRONOUN, _OBJECT_PRONOUNS),
    (MODAL, _MODALS),
    (PREPOSITION, _PREPOSITIONS),
    (PREDICATIVE, _PREDICATIVES),
    (FUNCTION, _FUNCTION_WORDS),
    (VERB, _VERBS),
    (ADJECTIVE, _ADJECTIVES),
)

_A_BEFORE_VOWEL = ("uni", "use", "usu", "uti", "ure", "uro", "eu", "ewe", "one", "once", "ufo")
_AN_BEFORE_H = ("hour", "honest", "honor", "honour", "heir")


def indefinite_article(phrase: str) -> str:
    """'a' or 'an' for the phrase that follows, by its first word's sound (roughly spelled)."""
    word = phrase.lower().lstrip("'\"(")
    if word.startswith(_AN_BEFORE_H):
        return "an"
    return "an" if word[:1] in tuple("aeiou") and not word.startswith(_A_BEFORE_VOWEL) else "a"


def _is_plural(word: str) -> bool:
    lower = word.lower().rsplit(" ", 1)[-1]
    if lower in _IRREGULAR_PLURAL_FORMS:
        return True
    return (
        len(lower) > 3
        and lower.endswith("s")
        and not lower.endswith(("ss", "us", "is", "ous", "ics", "ness"))
    )


def _is_mass(word: str) -> bool:
    lower = word.lower()
    return lower in _MASS_NOUNS or lower.endswith(("ness", "ism"))


def _display(word: str, role: str) -> str:
    """How a word is written: names and the listed holidays capitalised, "i" as "I"."""
    lower = word.lower()
    if role == NAME or lower in _PLACE_NAMES or lower in _CAPITALISED:
        return word[:1].upper() + word[1:]
    return "I" if lower == "i" else word


# ---------------------------------------------------------------------------------------------
# Templates: one line each, with slots and optional [groups]


@dataclass(frozen=True)
class _Slot:
    name: str


_Part = str | _Slot | tuple[str | _Slot, ...]
_TEMPLATE_TOKEN = re.compile(r"\{(\w*)\}|(\[)|(\])|([^\[\]{}]+)|([{}])")
_ARTICLE_BEFORE_SLOT = re.compile(r"\ban?\s*\[?\s*\{", re.IGNORECASE)


@dataclass(frozen=True)
class Template:
    """A parsed template line: literal text, slots, and bracketed groups of both.

    A group is dropped whole when any slot in it is empty; an empty slot outside a group just
    disappears, with the spaces and commas around it tidied.
    """

    line: str
    parts: tuple[_Part, ...]
    slots: frozenset[str]

    @property
    def literal_text(self) -> str:
        """Every word the template itself says, groups included."""
        pieces = [p for part in self.parts for p in (part if isinstance(part, tuple) else (part,))]
        return " ".join(piece for piece in pieces if isinstance(piece, str))

    def render(self, values: Mapping[str, str]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, tuple):
                if all(values.get(p.name) for p in part if isinstance(p, _Slot)):
                    out.extend(values[p.name] if isinstance(p, _Slot) else p for p in part)
            else:
                out.append(values.get(part.name, "") if isinstance(part, _Slot) else part)
        return _tidy("".join(out))


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r",(?:\s*,)+", ",", text)
    return text.strip(" ,")


def parse_template(line: str) -> Template:
    """One template line, or ValueError saying what is wrong with it."""
    stack: list[list[_Part]] = [[]]
    for match in _TEMPLATE_TOKEN.finditer(line):
        slot, opening, closing, text, stray = match.groups()
        if stray:
            raise ValueError(f"it has a stray '{stray}'")
        if slot is not None:
            if slot not in SLOTS:
                raise ValueError(f"{{{slot}}} is not a slot")
            stack[-1].append(_Slot(slot))
        elif opening:
            if len(stack) > 1:
                raise ValueError("it nests '[' groups")
            stack.append([])
        elif closing:
            if len(stack) == 1:
                raise ValueError("it has a ']' with no '['")
            group = tuple(stack.pop())  # nesting is refused above, so these are str or _Slot
            if not any(isinstance(part, _Slot) for part in group):
                raise ValueError("it has a [group] with no slot")
            stack[-1].append(group)
        else:
            stack[-1].append(text)
    if len(stack) > 1:
        raise ValueError("it has a '[' that is never closed")
    parts: tuple[_Part, ...] = tuple(stack[0])
    names = [
        p.name
        for part in parts
        for p in (part if isinstance(part, tuple) else (part,))
        if isinstance(p, _Slot)
    ]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"it has {{{repeated[0]}}} more than once")
    if _Slot("subject") not in parts:
        raise ValueError("it has no {subject} outside brackets")
    if _ARTICLE_BEFORE_SLOT.search(line):
        raise ValueError("it puts 'a' or 'an' before a slot, but slots bring their own articles")
    template = Template(line, parts, frozenset(names))
    if _QUOTED.search(template.literal_text) or "'" in template.literal_text:
        raise ValueError("it contains quotes, which ask for written text in the image")
    text_words = sorted(w for w in TEXT_WORDS if contains_word(template.literal_text, w))
    if text_words:
        raise ValueError(f"it says '{text_words[0]}', which asks for written text in the image")
    return template


def load_templates(path: str | Path) -> tuple[Template, ...]:
    """The templates in a file, or a NeuronAttackError naming the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise NeuronAttackError(
            f"The template file {path} does not exist; pass a text file with one template per "
            f"line (see {DEFAULT_TEMPLATES} for the format)."
        )
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise NeuronAttackError(
            f"Cannot read the template file {path} ({error}); save it as UTF-8 text."
        ) from error
    templates = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            templates.append(parse_template(text))
        except ValueError as problem:
            raise NeuronAttackError(
                f"Line {number} of the template file {path} is malformed: {problem}; see the "
                f"header of {DEFAULT_TEMPLATES} for the slots and syntax."
            ) from None
    if not any(template.slots == frozenset(SLOTS) for template in templates):
        raise NeuronAttackError(
            f"No template in {path} holds all six slots ({', '.join(SLOTS)}); add at least one, "
            "so that every word set has a template that fits."
        )
    return tuple(templates)


# ---------------------------------------------------------------------------------------------
# The template writer


# Scaffolding the phrase builder adds around words that need a partner; any of it may be
# forbidden, so each use picks among options.
_INFINITIVE_FRAMES = ("ready to", "about to", "trying to", "waiting to")
_SEEN_VERBS = ("spotted", "found", "photographed", "saw")
_LOOK_FRAMES = ("looking at", "facing", "next to")
_PARTICIPLES = ("lit", "photographed", "posed")  # after an adverb: "a softly lit cat"
_MODAL_DEFAULTS = ("be seen", "be found")
_DEFAULT_ADJECTIVES = ("small", "large", "old")  # after an intensifier with nothing to intensify
_NEAR_PREPOSITIONS = ("beside", "near", "next to")
_PLURAL_OTHERS = "others"  # "with two others": a number with no noun to count


@dataclass
class _Noun:
    """A noun phrase under construction; ``preposition`` set means it goes to the {near} slot."""

    word: str
    role: str = NOUN
    modifiers: list[str] = field(default_factory=list)
    determiner: str | None = None
    quantity: str | None = None
    preposition: str | None = None

    @property
    def plain(self) -> bool:
        """Whether it takes modifiers, a determiner or a number (names and phrases do not)."""
        return self.role == NOUN and " " not in self.word and self.word != _PLURAL_OTHERS

    def text(self) -> str:
        if self.role == NAME:
            return self.word
        if " " in self.word:
            if self.word.split()[0].lower() in _DETERMINERS | _QUANTITIES | {"a", "an", "the"}:
                return self.word
            if _is_plural(self.word):
                return self.word
            return f"{indefinite_article(self.word)} {self.word}"
        head = self.word
        if self.quantity and self.quantity != "one" and not _is_plural(head) and not _is_mass(head):
            head = plural(head)
        body = " ".join([*self.modifiers, head])
        if self.quantity or self.determiner:
            return f"{self.quantity or self.determiner} {body}"
        if _is_plural(head) or _is_mass(head):
            return body
        if head.lower() in _THE_NOUNS:
            return f"the {body}"
        return f"{indefinite_article(body)} {body}"


def _join(items: Sequence[str], conjunction: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


class _WordQueue:
    """The chosen words in endless shuffled rounds, so that every word is used about equally.

    A word that would repeat within one sentence (at a round boundary) waits for the next one.
    """

    def __init__(self, words: Sequence[str], rng: random.Random) -> None:
        self._words = list(words)
        self._rng = rng
        self._waiting: list[str] = []
        self._stream = self._rounds()

    def _rounds(self) -> Iterator[str]:
        while True:
            order = list(self._words)
            self._rng.shuffle(order)
            yield from order

    def take(self, count: int) -> list[str]:
        count = min(count, len(self._words))
        taken: list[str] = []
        held: list[str] = []
        while len(taken) < count:
            word = self._waiting.pop(0) if self._waiting else next(self._stream)
            if word in taken:
                held.append(word)
            else:
                taken.append(word)
        self._waiting = held + self._waiting
        return taken


@dataclass
class _Draft:
    """One sentence's words, by role, while the composer places them."""

    by_role: dict[str, list[str]]
    nouns: list[_Noun] = field(default_factory=list)
    # Closed-class words no phrase could hold: used only if the chosen template says them.
    spare: list[str] = field(default_factory=list)

    def take(self, role: str) -> list[str]:
        return list(self.by_role.get(role, []))


class _Composer:
    """Builds one sentence: slot contents from the words' roles, then a template that fits them.

    Every choice goes through ``rng`` and every piece of scaffolding through :meth:`pick`, which
    never returns a forbidden option, so retries differ and stay clear of forbidden words.
    """

    def __init__(self, source: str, forbidden: Collection[str], rng: random.Random) -> None:
        self.source = source
        self.forbidden = _normalised(forbidden)
        self.rng = rng

    def pick(self, options: Sequence[str]) -> str | None:
        allowed = [o for o in options if not _mentions_forbidden(o, self.source, self.forbidden)]
        return self.rng.choice(allowed) if allowed else None

    def sentence(self, words: Sequence[str], templates: Sequence[Template]) -> str | None:
        """A sentence using ``words``, or None when no template fits what they became."""
        by_role: dict[str, list[str]] = {}
        for word in words:
            role = word_role(word)
            by_role.setdefault(role, []).append(_display(word, role))
        draft = _Draft(
            by_role,
            nouns=[_Noun(w) for w in by_role.get(NOUN, [])],
            spare=list(by_role.get(FUNCTION, [])),
        )
        values = self._slots(draft)
        fitting = [t for t in templates if {k for k, v in values.items() if v} <= t.slots]
        if not fitting:
            return None
        return self._best(fitting, values, draft.spare).render(values)

    def _best(
        self, templates: Sequence[Template], values: Mapping[str, str], spare: Sequence[str]
    ) -> Template:
        """A random template among those that already say the most spare words ("a photo of")."""
        if not spare:
            return self.rng.choice(templates)
        scores = [sum(contains_word(t.render(values), w) for w in spare) for t in templates]
        best = max(scores)
        return self.rng.choice([t for t, s in zip(templates, scores, strict=True) if s == best])

    def _slots(self, draft: _Draft) -> dict[str, str]:
        names = draft.take(NAME)
        draft.nouns += [_Noun(name, NAME) for name in names[1:]]
        # Patterns and surfaces belong to the subject ("a red cat with stripes"), not the scene.
        worn = [n.word for n in draft.nouns if n.word.lower() in _WITH_NOUNS]
        draft.nouns = [n for n in draft.nouns if n.word.lower() not in _WITH_NOUNS]
        modifiers = self._subject_modifiers(draft)
        action, participle = self._actions(draft)
        determiners = draft.take(DETERMINER)
        subject_determiner = f"{names[0]}'s" if names else None
        if subject_determiner is None and determiners:
            subject_determiner = determiners.pop(0)
        self._count_nouns(draft, determiners, draft.take(QUANTITY))
        places = [self._setting(word, _PLACES) for word in draft.take(PLACE)]
        self._place_prepositions(draft, places, draft.take(PREPOSITION))
        # A few nouns are placed by a preposition, so that scenes have a layout, not just a list.
        unplaced = [n for n in draft.nouns if not n.preposition]
        for noun in self.rng.sample(unplaced, self.rng.randint(0, min(2, len(unplaced)))):
            used = {n.preposition for n in draft.nouns}
            noun.preposition = self._near_preposition(noun.word, used)
        listed = [n.text() for n in draft.nouns if not n.preposition]
        conjunction = "or" if "or" in draft.spare and len(listed) > 1 else "and"
        return {
            "subject": self._subject(subject_determiner, participle, modifiers, worn),
            "action": action,
            "place": " ".join(places),
            "time": " ".join(self._setting(word, _TIMES) for word in draft.take(TIME)),
            "near": " ".join(f"{n.preposition} {n.text()}" for n in draft.nouns if n.preposition),
            "nouns": _join(listed, conjunction),
        }

    def _subject(
        self, determiner: str | None, participle: str, modifiers: list[str], worn: list[str]
    ) -> str:
        # "a quietly sleeping fluffy cat" but "a fluffy sleeping cat": a bare participle sits
        # next to the noun like a compound, one with an adverb leads like a clause.
        if " " in participle:
            parts = (participle, *modifiers, self.source)
        else:
            parts = (*modifiers, participle, self.source)
        body = " ".join(part for part in parts if part)
        if determiner:
            body = f"{determiner} {body}"
        elif not _is_plural(self.source):
            body = f"{indefinite_article(body)} {body}"
        return f"{body} with {_join(worn)}" if worn else body

    def _subject_modifiers(self, draft: _Draft) -> list[str]:
        """Adjectives and colours before the source: two and one at most when nouns can take the
        rest ("a fluffy red cat with a famous elephant"), all of them otherwise."""
        adjectives, colours = draft.take(ADJECTIVE), draft.take(COLOUR)
        intensifiers = draft.take(INTENSIFIER)
        if any(noun.plain for noun in draft.nouns):
            self._modify_nouns(draft.nouns, adjectives[2:] + colours[1:])
            adjectives, colours = adjectives[:2], colours[:1]
        if intensifiers and not (adjectives or colours):
            default = self.pick(_DEFAULT_ADJECTIVES)
            adjectives = [default] if default else []
        if not (adjectives or colours):
            draft.spare += intensifiers
            return []
        return [*intensifiers, *adjectives, *([_join(colours)] if colours else [])]

    def _actions(self, draft: _Draft) -> tuple[str, str]:
        """The {action} text and the participle before the source ("quietly sleeping")."""
        gerunds, adverbs = draft.take(GERUND), draft.take(ADVERB)
        participle = ""
        if adverbs:
            partner = gerunds.pop(0) if gerunds else self.pick(_PARTICIPLES)
            participle = f"{adverbs.pop(0)} {partner}" if partner else ""
        elif gerunds and self.rng.random() < 0.5:
            participle = gerunds.pop(0)
        parts = [*gerunds, *draft.take(PREDICATIVE)]
        # A lone adverb after the source still reads ("a cat quietly on the beach").
        parts += [self._framed([a], "{words} {frame}", _PARTICIPLES) or a for a in adverbs]
        verbs, modals = draft.take(VERB), draft.take(MODAL)
        if modals and verbs:
            parts.append(f"that {_join(modals)} {_join(verbs)}")
        elif modals:
            self._frame_or_spare(draft, parts, modals, "that {words} {frame}", _MODAL_DEFAULTS)
        elif verbs:
            framed = self._framed(verbs, "{frame} {words}", _INFINITIVE_FRAMES)
            if framed:
                parts.append(framed)
            else:
                draft.nouns += [_Noun(verb) for verb in verbs]  # most verbs are nouns too
        objects = draft.take(OBJECT_PRONOUN)
        self._frame_or_spare(draft, parts, objects, "{frame} {words}", _LOOK_FRAMES)
        clause: list[str] = []
        subjects = draft.take(SUBJECT_PRONOUN)
        self._frame_or_spare(draft, clause, subjects, "{words} {frame}", _SEEN_VERBS)
        return " ".join([*clause, _join(parts)]).strip(), participle

    def _framed(self, words: Sequence[str], pattern: str, frames: Sequence[str]) -> str | None:
        """``words`` set in a frame ("ready to {words}"), or None when every frame is forbidden."""
        frame = self.pick(frames) if words else None
        return pattern.format(frame=frame, words=_join(words)) if frame else None

    def _frame_or_spare(
        self,
        draft: _Draft,
        parts: list[str],
        words: Sequence[str],
        pattern: str,
        frames: Sequence[str],
    ) -> None:
        framed = self._framed(words, pattern, frames)
        if framed:
            parts.append(framed)
        else:
            draft.spare += words

    @staticmethod
    def _modify_nouns(nouns: list[_Noun], modifiers: list[str]) -> None:
        """Hang leftover adjectives and colours on nouns, singular ones first ("a red ball")."""
        targets = sorted((n for n in nouns if n.plain), key=lambda n: _is_plural(n.word))
        for index, modifier in enumerate(modifiers):
            targets[index % len(targets)].modifiers.append(modifier)

    def _count_nouns(self, draft: _Draft, determiners: list[str], quantities: list[str]) -> None:
        """Give determiners to singular nouns and numbers to countable ones ("two elephants")."""
        for word in determiners:
            free = [
                n
                for n in draft.nouns
                if n.plain
                and not (n.determiner or n.quantity)
                and not _is_plural(n.word)
                and not _is_mass(n.word)
            ]
            if free:
                free[0].determiner = word
            else:
                draft.spare.append(word)
        for word in quantities:
            free = [
                n
                for n in draft.nouns
                if n.plain
                and not (n.determiner or n.quantity)
                and (word == "some" or not _is_mass(n.word))
            ]
            if free:
                free[0].quantity = word
            elif self.pick([_PLURAL_OTHERS]):
                draft.nouns.append(_Noun(_PLURAL_OTHERS, quantity=word))
            else:
                draft.spare.append(word)

    @staticmethod
    def _place_prepositions(draft: _Draft, places: list[str], prepositions: list[str]) -> None:
        """Chosen prepositions take a noun ("under an elephant"), else a place ("under the
        water")."""
        for preposition in prepositions:
            free = [n for n in draft.nouns if not n.preposition]
            reworded = [i for i, p in enumerate(places) if len(p.split()) >= 3]
            if free:
                free[0].preposition = preposition
            elif reworded:
                index = reworded[0]
                places[index] = f"{preposition} {places[index].split(' ', 1)[1]}"
            else:
                draft.spare.append(preposition)

    def _near_preposition(self, word: str, used: Collection[str | None]) -> str:
        """ "under" the sky's things, else a side preposition this sentence has not used yet."""
        if word.lower() in _UNDER_NOUNS:
            return "under"
        fresh = [p for p in _NEAR_PREPOSITIONS if p not in used]
        return self.pick(fresh or _NEAR_PREPOSITIONS) or "with"

    @staticmethod
    def _setting(word: str, table: Mapping[str, str]) -> str:
        """A place or time word with its preposition: "on the beach", "in Paris", "at night"."""
        prefix = table.get(word.lower(), "in" if word[:1].isupper() else "")
        if prefix.endswith(" a"):
            prefix = f"{prefix[:-2]} {indefinite_article(word)}"
        return f"{prefix} {word}".strip()


class TemplateWriter:
    """The default writer: offline, deterministic per seed, grammatical by construction.

    Each sentence takes the next 3 to 6 words (``min_words``..``max_words``) from shuffled rounds
    of the chosen words, so across sentences every word is used about equally; their roles (see
    :func:`word_role`) become slot contents and a template that has a slot for each fills them.
    Words that fit no role are nouns in a list ("with a value, an elephant and the sun").
    Closed-class words with no phrase of their own ("because", "of", a preposition with nothing
    to govern) count only where the chosen template already says them: as nouns ("a because")
    they would make the sentence ungrammatical, and ``words_used`` says honestly what was used.
    A chosen word that itself names text ("sign", "captioned") is placed like any other; only
    the writer's own scaffolding is kept free of text.
    """

    def __init__(
        self,
        templates_path: str | Path | None = None,
        min_words: int = MIN_WORDS,
        max_words: int = MAX_WORDS,
    ) -> None:
        if not 1 <= min_words <= max_words:
            raise NeuronAttackError(
                f"Words per sentence must satisfy 1 <= min_words <= max_words; got {min_words} "
                f"and {max_words}."
            )
        path = DEFAULT_TEMPLATES if templates_path is None else Path(templates_path)
        self.templates = load_templates(path)
        self.name = TEMPLATE_PREFIX if templates_path is None else f"{TEMPLATE_PREFIX}:{path}"
        self.min_words = min_words
        self.max_words = max_words

    def write(
        self,
        source: str,
        words: Sequence[str],
        count: int,
        seed: int,
        forbidden: Collection[str] = (),
    ) -> list[Sentence]:
        source = _check_request(source, count)
        rng = random.Random(seed)
        chosen = usable_words(words, source, forbidden)
        # A word the source name already says is in every sentence without being placed.
        queue = _WordQueue([w for w in chosen if not contains_word(source, w)], rng)
        composer = _Composer(source, forbidden, rng)
        templates = [
            t
            for t in self.templates
            if not _mentions_forbidden(t.literal_text, source, composer.forbidden)
        ]
        sentences: list[Sentence] = []
        seen: set[str] = set()
        for _ in range(count):
            picked = queue.take(rng.randint(self.min_words, self.max_words))
            text = self._compose(composer, picked, templates, seen, chosen)
            seen.add(text)
            sentences.append(Sentence(text, words_in(text, chosen)))
        return sentences

    def _compose(
        self,
        composer: _Composer,
        words: list[str],
        templates: Sequence[Template],
        seen: set[str],
        chosen: Sequence[str],
    ) -> str:
        """A new sentence if one can be found, a repeat if only repeats pass, else an error.

        When no try passes the filter, one word is left out (the one whose absence lets a
        sentence pass, else the last) and the tries start again.
        """
        words = list(words)
        while True:
            text = self._attempt(composer, words, templates, seen, chosen, _ATTEMPTS)
            if text is not None:
                return text
            if not words:
                raise NeuronAttackError(
                    f"No template can describe '{composer.source}' without a forbidden word; "
                    f"add templates that avoid {', '.join(sorted(composer.forbidden)[:5])}, or "
                    "forbid fewer words."
                )
            words = self._without_culprit(composer, words, templates, seen, chosen)

    def _without_culprit(
        self,
        composer: _Composer,
        words: list[str],
        templates: Sequence[Template],
        seen: set[str],
        chosen: Sequence[str],
    ) -> list[str]:
        """The words less one: a word whose phrase always holds a forbidden word ("the" in "on
        the beach") would otherwise take innocent words down with it."""
        for index in reversed(range(len(words))):
            rest = words[:index] + words[index + 1 :]
            if self._attempt(composer, rest, templates, seen, chosen, _CULPRIT_ATTEMPTS):
                return rest
        return words[:-1]

    def _attempt(
        self,
        composer: _Composer,
        words: list[str],
        templates: Sequence[Template],
        seen: set[str],
        chosen: Sequence[str],
        tries: int,
    ) -> str | None:
        """The first new sentence that passes, else a repeat that passes, else None."""
        repeat = None
        for _ in range(tries):
            text = composer.sentence(words, templates)
            if text is None or not self._acceptable(text, composer, chosen):
                continue
            if text not in seen:
                return text
            repeat = text
        return repeat

    @staticmethod
    def _acceptable(text: str, composer: _Composer, chosen: Sequence[str]) -> bool:
        if not post_filter([text], composer.source, composer.forbidden):
            return False
        return not mentions_text(text, [composer.source, *chosen])


# ---------------------------------------------------------------------------------------------
# The LLM writer


_BULLET = re.compile(r"^\s*(?:[-*•·–—>]+|\(?\d{1,3}[.):\]]|\d{1,3}\s+[-–—]|[A-Za-z][.)](?=\s))\s*")
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»"}
_MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "tokenizer*"]
# Room for one description per line asked for, plus the model's preamble.
_TOKENS_PER_LINE = 48
_PREAMBLE_TOKENS = 64


def build_prompt(source: str, words: Sequence[str], count: int, forbidden: Collection[str]) -> str:
    """The instructions of method.md §6 for an instruction-following LLM."""
    lines = [
        f"Write {count} different descriptions of photographs for an image generator, one per "
        "line.",
        # No quotes around the name: models copy them, and quoted words are refused as text.
        f"Every description shows {indefinite_article(source)} {source} and names it with "
        f"exactly these words: {source}.",
    ]
    if words:
        lines.append(
            "Use as many of these words as you can in every description, as objects, colours, "
            f"places, actions or qualities of the scene: {', '.join(words)}."
        )
    if forbidden:
        lines.append(
            "Never use these words, their plurals, their synonyms or closely related words: "
            f"{', '.join(sorted(forbidden))}."
        )
    lines += [
        "Describe concrete scenes a camera could capture. There must be no text, signs, letters, "
        "labels, logos or writing anywhere in the image.",
        "Answer with the descriptions only: no numbering, no quotes, no other text.",
    ]
    return "\n".join(lines)


def parse_lines(raw: str) -> list[str]:
    """Descriptions from an LLM's answer: one per line, numbering, bullets and quotes removed.

    Lines that end with ':' (a preamble such as "Here are 5 descriptions:") and lines of fewer
    than three words are dropped.
    """
    lines = []
    for line in raw.splitlines():
        text = _BULLET.sub("", line, count=1).strip().strip("*_").strip()
        if len(text) > 1 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
            text = text[1:-1].strip()
        text = text.rstrip(" .")
        if text and not text.endswith(":") and len(text.split()) >= 3:
            lines.append(text)
    return lines


class HFWriter:
    """A causal language model from a local folder or the Hugging Face cache writes the lines.

    The model is loaded when the writer is made, so a missing model fails before anything else
    runs. Generation samples under a private torch RNG seeded from (seed, round), so the same call
    gives the same lines and the caller's RNG is untouched. Lines go through the same filter as
    the template writer's plus :func:`mentions_text`; rounds repeat (at most ``max_rounds``) until
    ``count`` lines pass.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        max_new_tokens: int | None = None,
        max_rounds: int = 4,
        temperature: float = 0.8,
    ) -> None:
        self.model_ref = model
        self.name = f"{HF_PREFIX}{model}"
        self.max_new_tokens = max_new_tokens
        self.max_rounds = max_rounds
        self.temperature = temperature
        folder = _model_folder(model)
        self.device = _resolve_device(device)
        self.tokenizer, self.model = _load_causal_lm(folder, self.device, model)

    def write(
        self,
        source: str,
        words: Sequence[str],
        count: int,
        seed: int,
        forbidden: Collection[str] = (),
    ) -> list[Sentence]:
        source = _check_request(source, count)
        chosen = usable_words(words, source, forbidden)
        kept: list[str] = []
        for round_index in range(self.max_rounds):
            if len(kept) >= count:
                break
            missing = count - len(kept)
            # Ask for half as many again: some lines always fail the filter.
            lines_asked = missing + (missing + 1) // 2
            prompt = build_prompt(source, chosen, lines_asked, forbidden)
            budget = self.max_new_tokens or _PREAMBLE_TOKENS + _TOKENS_PER_LINE * lines_asked
            raw = self.generate(prompt, _round_seed(seed, round_index), budget)
            allowed = [source, *chosen]
            lines = [line for line in parse_lines(raw) if not mentions_text(line, allowed)]
            kept = post_filter([*kept, *lines], source, forbidden)
        if len(kept) < count:
            raise NeuronAttackError(
                f"The writer '{self.name}' wrote only {len(kept)} of {count} usable descriptions "
                f"of '{source}' in {self.max_rounds} rounds (each must name '{source}', none of "
                f"the {len(forbidden)} forbidden words and no text in the image); try a stronger "
                "instruction model or the template writer."
            )
        return [Sentence(text, words_in(text, chosen)) for text in kept[:count]]

    def format_prompt(self, prompt: str) -> str:
        """The text the model reads: the prompt in its chat template when it has one."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return f"{prompt}\n\n"

    def generate(self, prompt: str, seed: int, max_new_tokens: int = 512) -> str:
        """The model's raw answer to one prompt, sampled under ``seed``."""
        import torch

        chat = bool(getattr(self.tokenizer, "chat_template", None))
        # A chat template already writes the special tokens the model expects.
        inputs = self.tokenizer(
            self.format_prompt(prompt), return_tensors="pt", add_special_tokens=not chat
        ).to(self.device)
        pad = self.tokenizer.pad_token_id
        with _private_rng(seed, self.device), torch.no_grad():
            output = self.model.generate(
                **inputs,
                do_sample=True,
                temperature=self.temperature,
                top_p=0.95,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.eos_token_id if pad is None else pad,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]  # [new]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)


def _round_seed(seed: int, round_index: int) -> int:
    """A seed for one round: rounds of one call differ, and stay off neighbouring calls' seeds."""
    digest = hashlib.sha256(f"{seed}:{round_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63


@contextmanager
def _private_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for sampling and restore the caller's afterwards."""
    import torch

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _resolve_device(device: str) -> torch.device:
    import torch

    try:
        return torch.device(resolve_device(device))
    except RuntimeError as error:
        raise NeuronAttackError(
            f"Unknown device '{device}' for the writer; use auto, cpu, cuda or cuda:N."
        ) from error


def _model_folder(ref: str) -> Path:
    """The local folder of the writer model: the path given, or a hub repo's cache snapshot."""
    path = Path(os.path.abspath(os.path.expanduser(ref)))
    if path.is_dir():
        return path
    # A repo id is "name" or "org/name"; anything else that is not a folder is a wrong path.
    looks_like_path = ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref
    if looks_like_path or not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", ref):
        raise NeuronAttackError(
            f"The writer model folder {path} does not exist; give 'hf:/path/to/model' (a folder "
            "with config.json, the tokenizer and the weights) or a hub repo id such as "
            "'hf:Qwen/Qwen2.5-1.5B-Instruct'."
        )
    return _hub_snapshot(ref)


def _hub_snapshot(repo_id: str) -> Path:
    """A hub repo's cache snapshot, downloaded if need be, or a NeuronAttackError at once.

    The cache is tried first so a pre-populated cache works with no connection. Before any
    download one HEAD request checks that the hub answers and has the repo, so an unreachable hub
    fails in moments instead of after huggingface_hub's retries. Weights come as safetensors only.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, snapshot_download
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    # The hub client raises many types for "not cached" (entry, repo, revision not found).
    except Exception:
        pass
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"))
        return Path(snapshot_download(repo_id, allow_patterns=_MODEL_FILES))
    except OfflineModeIsEnabled:
        # Its own message says to unset HF_HUB_OFFLINE, the opposite of what is needed here.
        reason = "HF_HUB_OFFLINE is set and the cache does not hold it"
    # The hub client raises many types (DNS, HTTP, auth, missing repo); all mean the same here.
    except Exception as error:
        reason = first_line(error)
    raise NeuronAttackError(
        f"The writer model '{repo_id}' could not be downloaded or found in the local Hugging Face "
        f"cache ({reason}); pass a local folder as 'hf:/path/to/model', or pre-populate the "
        "Hugging Face cache (hf download REPO on a machine with network) and set HF_HUB_OFFLINE=1."
    )


def _load_causal_lm(folder: Path, device: torch.device, ref: str) -> tuple[object, object]:
    """Tokenizer and model from a local folder, never running code shipped with the model."""
    import torch

    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:
        raise NeuronAttackError(
            "The hf: writer needs the transformers package; install it with "
            "'pip install transformers' or use the template writer."
        ) from error
    # Half precision is slow or missing on CPU; bfloat16 keeps an 8B model on one GPU.
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False, dtype=dtype
        )
    # transformers raises many types for an incomplete or foreign folder.
    except Exception as error:
        raise NeuronAttackError(
            f"transformers could not load a text-generation model for '{ref}' from {folder} "
            f"({first_line(error)}); check that it holds a causal language model (config.json, "
            "tokenizer, safetensors weights) that needs no custom code."
        ) from error
    return tokenizer, model.to(device).eval()
