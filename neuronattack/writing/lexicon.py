"""Roles: what a word can be in a scene, and the lexicons the sentence composer reads.

Word classes come from lemminflect's lexicon (see :mod:`neuronattack.writing.inflection`). The
lexicons kept here hold what it does not record: closed-class words (determiners, pronouns,
modals, prepositions; it covers open classes only), scene semantics (colours, places and times
with the preposition they take, frequent first and place names, things that take "the", "under"
or "with") and countability (mass nouns: lemminflect lists "information" and "money" with
plurals).
"""

from __future__ import annotations

from neuronattack.writing.inflection import (
    noun_plurals,
    number_words,
    verb_forms,
    word_classes,
)
from neuronattack.writing.overrides import ADJECTIVES_FIRST, VERBS_FIRST


def word_set(words: str) -> frozenset[str]:
    """A word set written as one space-separated string, which keeps long lexicons readable."""
    return frozenset(words.split())


def _table(prefix: str, words: str) -> dict[str, str]:
    """Each word mapped to the words it follows ("on the" beach)."""
    return dict.fromkeys(words.split(), prefix)


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
FINITE_VERB = "finite verb"  # a past or -s form: "a cat that explores"
ADVERB = "adverb"  # "a quietly sleeping cat"
GERUND = "gerund"  # "a sleeping cat", "a cat sleeping"
ADJECTIVE = "adjective"
FUNCTION = "function"  # other closed-class words: kept when a template already says them
NOUN = "noun"  # everything else, and phrases

_COLOURS = word_set(
    "red orange yellow green blue purple pink brown black white grey gray gold golden silver "
    "violet crimson scarlet turquoise beige navy maroon teal cyan magenta tan ivory amber bronze "
    "copper olive lime indigo lavender emerald"
)

# Place and time words with the preposition and article they take; "a" becomes "an" as needed.
PLACES = {
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
TIMES = {
    **_table(
        "at",
        "night midnight noon dawn dusk sunset sunrise twilight nighttime christmas "
        "halloween easter thanksgiving",
    ),
    **_table("in the", "morning evening afternoon daytime"),
    **_table("in", "winter summer autumn spring"),
    **_table("", "today tonight yesterday tomorrow now again once later"),
}
_CAPITALISED = word_set("christmas halloween easter thanksgiving")

# Frequent, unambiguous proper names as the lowercase word list spells them; a capitalised word
# not listed counts as a person's name.
_PLACE_NAMES = word_set(
    "paris london rome tokyo berlin madrid moscow venice vienna athens cairo sydney chicago "
    "boston seattle dubai bangkok beijing shanghai mumbai delhi japan india france italy spain "
    "germany england america africa europe asia australia canada mexico brazil egypt russia "
    "ireland scotland greece norway sweden iceland texas california florida hawaii alaska "
    "switzerland netherlands portugal argentina peru kenya morocco vietnam korea antarctica"
)
_FIRST_NAMES = word_set(
    "john james david michael robert william thomas charles george paul peter richard daniel "
    "kevin jason brian eric steven chris ryan adam matthew andrew joseph edward henry harry tom "
    "sam alex ben nick tony frank mike dave jim joe tim bob larry gary mary maria sarah anna emma "
    "lisa laura rachel kate amy alice lucy sophie olivia jane susan linda karen nancy helen anne "
    "julia jessica jennifer emily hannah elizabeth margaret martha sophia isabella mia charlotte "
    "amelia harper ella victoria natalie diana"
)
DETERMINERS = word_set("the my your his her its our their this that every each another one")
# With the number words from inflect ("two", "forty"): see is_quantity.
_QUANTITIES = word_set("dozen some many several few these those both various numerous")
_INTENSIFIERS = word_set("very really quite rather too so super")
_SUBJECT_PRONOUNS = word_set("i he she we they you")
_OBJECT_PRONOUNS = word_set("me him us them it")
_MODALS = word_set("can could will would should may might must shall")
_PREPOSITIONS = word_set(
    "under over above below beneath underneath beside behind near among around across along "
    "against atop beyond toward towards upon within past through into onto between"
)
_PREDICATIVES = word_set("asleep awake alone alive afloat aglow ablaze adrift ashore")
_FUNCTION_WORDS = word_set(
    "a an and or but nor of in on at to for from with by as is are was were be been being "
    "am has have had do does did not no if than then which who whom whose what where when why "
    "how because although though while unless until since about like without despite during "
    "except via per versus yes oh okay please there here just also still even ever never always "
    "often sometimes already almost only all any more most such same other own however therefore "
    "nevertheless nonetheless regardless meanwhile moreover otherwise whereas whether hence thus "
    "anyway indeed perhaps maybe instead unlike nothing something anything everything"
)
# Unique things take "the"; uncountable ones take no article.
THE_NOUNS = word_set("sun moon sky earth world horizon universe internet equator")
# Nouns used uncountably in scenes that lemminflect also lists with a plural ("waters",
# "informations"); those it lists with none ("sand", "music") it marks mass itself.
_MASS_NOUNS = word_set(
    "advice air art brass bread butter candy cheese chocolate clay coffee corn cotton energy "
    "equipment evidence fire fog food glass gold grain grass hair ice information iron knowledge "
    "lace love marble meat metal milk money oil paper plastic rain rice rubber salt seaweed silk "
    "smoke snow software stone sugar tea velvet water wheat wind wood wool"
)
UNDER_NOUNS = word_set(
    "sun moon cloud clouds star stars rainbow tree trees bridge umbrella lamp ceiling"
)
# Patterns and surfaces belong to the object: "a cat with stripes".
WITH_NOUNS = word_set("stripes dots spots checks patches scales feathers fur wings horns")

def word_role(word: str) -> str:
    """The role a chosen word takes in a sentence.

    Phrases are nouns. Capitalised words are names (of places when listed). Lowercase words are
    looked up in the lexicons above (colours, places and times, frequent first and place names,
    determiners, numbers, pronouns, modals, spatial prepositions, predicative adjectives, other
    function words), then by lemminflect's word classes (:func:`open_class_role`). A word
    outside its lexicon (a rare name, a brand) is a noun, the safe guess: a noun placed as a
    modifier reads as a compound ("a city cat") and an unknown word placed as a noun still parses.
    """
    if " " in word:
        return NOUN
    lower = word.lower()
    if word[:1].isupper():
        return PLACE if lower in _PLACE_NAMES else TIME if lower in TIMES else NAME
    for role, lexicon in _LEXICONS:
        if lower in lexicon:
            return role
    if is_quantity(lower):
        return QUANTITY
    return open_class_role(lower)


def is_quantity(word: str) -> bool:
    """Whether a word counts the noun after it: a number ("two", "forty") or "some", "many"..."""
    lower = word.lower()
    return lower in _QUANTITIES or lower in number_words()


def open_class_role(word: str) -> str:
    """The role of a lowercase content word: ``overrides.ADJECTIVES_FIRST`` and
    ``overrides.VERBS_FIRST`` first, then lemminflect's classes (:func:`library_role`)."""
    if word in ADJECTIVES_FIRST:
        return ADJECTIVE
    if word in VERBS_FIRST:
        return VERB
    return library_role(word)


def library_role(word: str) -> str:
    """The role of a lowercase content word from lemminflect's classes and verb forms alone.

    In order: a verb's -ing form is a gerund ("a sleeping cat") unless it is also a countable
    noun ("a building"); a past participle is an adjective ("a painted cat"); an adjective is an
    adjective ("a famous cat") unless it is also a noun without an adjective ending ("an
    external wall" but "a house", not "a house cat", which is another animal: a scene wants the
    object); -ly adverbs are adverbs ("a quietly sleeping cat"); a verb that is no noun is a verb
    ("ready to organize"); nouns are nouns ("a dance"); a past-tense or -s verb form that is no
    noun is a finite verb ("a cat that explores"). Any other adverb ("apiece") has no phrase of
    its own: like a function word, it counts only where a template says it. Outside the lexicon
    (rare words, lowercased names) an adjective ending ("incompatible", "nordic") makes an
    adjective, and anything else is a noun.
    """
    classes = word_classes(word)
    if not classes:
        return ADJECTIVE if word.endswith(_ADJECTIVE_ENDINGS) and len(word) > 5 else NOUN
    forms = verb_forms(word)
    nouns = classes.get("NOUN", ())
    if "VBG" in forms and not (word in nouns and word not in noun_plurals(word)):
        return GERUND
    if "VBN" in forms:
        return ADJECTIVE
    if "ADJ" in classes and (not nouns or word.endswith(_ADJECTIVE_ENDINGS)):
        return ADJECTIVE
    if "ADV" in classes and word.endswith("ly"):
        return ADVERB
    if "VERB" in classes and word in classes["VERB"] and not nouns:
        return VERB
    if nouns:
        return NOUN
    if forms & {"VBZ", "VBD"}:
        return FINITE_VERB
    return FUNCTION


# Adjective endings: they decide for words lemminflect lists as adjective and noun ("external",
# "detective") and for words outside its lexicon ("incompatible"), where names rarely have them.
_ADJECTIVE_ENDINGS = ("ous", "ful", "ive", "al", "ic", "less", "able", "ible", "ish", "ese")

# First match wins: "orange" is a colour before a noun, "spring" a season before anything else.
_LEXICONS: tuple[tuple[str, frozenset[str]], ...] = (
    (COLOUR, _COLOURS),
    (TIME, frozenset(TIMES)),
    (PLACE, frozenset(PLACES) | _PLACE_NAMES),
    (NAME, _FIRST_NAMES),
    (DETERMINER, DETERMINERS),
    (INTENSIFIER, _INTENSIFIERS),
    (SUBJECT_PRONOUN, _SUBJECT_PRONOUNS),
    (OBJECT_PRONOUN, _OBJECT_PRONOUNS),
    (MODAL, _MODALS),
    (PREPOSITION, _PREPOSITIONS),
    (PREDICATIVE, _PREDICATIVES),
    (FUNCTION, _FUNCTION_WORDS),
)


def is_mass(word: str) -> bool:
    """Whether a noun is uncountable ("water", "happiness", "sand"): it takes no article and no
    number. lemminflect's lexicon marks a noun uncountable by listing no plural but the noun
    itself ("sand", "yoga"; so too "sheep", which reads as well without an article)."""
    lower = word.lower()
    return (
        lower in _MASS_NOUNS
        or lower.endswith(("ness", "ism"))
        or noun_plurals(lower) == (lower,)
    )


def display(word: str, role: str) -> str:
    """How a word is written: names and the listed holidays capitalised, "i" as "I"."""
    lower = word.lower()
    if role == NAME or lower in _PLACE_NAMES or lower in _CAPITALISED:
        return word[:1].upper() + word[1:]
    return "I" if lower == "i" else word

