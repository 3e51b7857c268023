"""Roles: what a word can be in a scene, guessed from small lexicons and suffixes, and the
lexicons the sentence composer reads (places and times with their prepositions, nouns that take
"the", no article, "under" or "with")."""

from __future__ import annotations

import re


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
QUANTITIES = word_set(
    "two three four five six seven eight nine ten twelve dozen hundred thousand million some "
    "many several few these those both various numerous"
)
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
    "anyway indeed perhaps maybe instead unlike"
)
_VERBS = word_set(
    "make take go get see come know think look want give use find tell ask work feel try leave "
    "call run play eat sleep swim jump fly sing dance read write walk talk sit stand win pay meet "
    "buy sell build send fall cut drive ride climb catch throw hide fight save help learn teach "
    "grow open close start wait watch listen speak cook wash explore hunt celebrate rest relax "
    "travel dream smile laugh cry hug kiss paint draw chase dig carry pull push lift kick shop "
    "visit escape survive protect collect hold pray vote invest remember forget believe love hope "
    "wonder sail surf ski skate hike camp fish bake shout whisper breathe shine"
)
_ADJECTIVES = word_set(
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
_SUFFIX_NOUNS = word_set(
    "family lily italy july belly jelly holly rally ally bully supply reply apply assembly "
    "butterfly dragonfly firefly monopoly fly morning evening building wedding clothing ceiling "
    "nothing something anything everything during spring string thing king ring wing bring "
    "sting swing ding viking pudding darling sibling duckling earring stocking painting drawing "
    "meeting feeling hundred kindred shed"
)
# Unique things take "the"; uncountable ones take no article.
THE_NOUNS = word_set("sun moon sky earth world horizon universe internet equator")
_MASS_NOUNS = word_set(
    "water sand snow grass money music information food bread rice milk coffee tea furniture "
    "equipment advice news luggage hair fire smoke ice gold silver wood paper rain wind fog air "
    "love art steam mud dust oil salt sugar butter cheese meat wool cotton silk leather glass "
    "plastic metal stone concrete traffic weather software hardware homework research evidence "
    "knowledge jewelry jewellery garbage trash foliage grain corn wheat hay seaweed chocolate "
    "candy energy darkness sunshine chrome steel iron marble granite brass velvet lace denim "
    "rubber clay"
)
UNDER_NOUNS = word_set(
    "sun moon cloud clouds star stars rainbow tree trees bridge umbrella lamp ceiling"
)
# Patterns and surfaces belong to the object: "a cat with stripes".
WITH_NOUNS = word_set("stripes dots spots checks patches scales feathers fur wings horns")

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
        return PLACE if lower in _PLACE_NAMES else TIME if lower in TIMES else NAME
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
    (TIME, frozenset(TIMES)),
    (PLACE, frozenset(PLACES) | _PLACE_NAMES),
    (NAME, _FIRST_NAMES),
    (DETERMINER, DETERMINERS),
    (QUANTITY, QUANTITIES),
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


def is_mass(word: str) -> bool:
    """Whether a noun is uncountable ("water", "happiness"): it takes no article and no number."""
    lower = word.lower()
    return lower in _MASS_NOUNS or lower.endswith(("ness", "ism"))


def display(word: str, role: str) -> str:
    """How a word is written: names and the listed holidays capitalised, "i" as "I"."""
    lower = word.lower()
    if role == NAME or lower in _PLACE_NAMES or lower in _CAPITALISED:
        return word[:1].upper() + word[1:]
    return "I" if lower == "i" else word

