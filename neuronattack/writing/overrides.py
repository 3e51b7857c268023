"""Where inflect and lemminflect answer wrongly for our sentences: the one override table.

Each entry says what we write instead and why the libraries' answer is wrong here. A test checks
that every entry still differs from what the libraries say, so an entry a library update makes
redundant fails the test and leaves the table.

One rule rather than entries (``inflection.plural``): a noun outside lemminflect's lexicon that
inflect pluralises -man → -men takes -s instead, because outside the lexicon such words are names
and demonyms ("germans", "romans", "normans"), never compounds of "man" (those are in it).
"""

from __future__ import annotations

# noun -> (its plural in a scene, why).
PLURALS: dict[str, tuple[str, str]] = {
    "person": ("people", "lemminflect's lexicon lists only 'persons' (the legal plural)"),
}

# word -> (its article, why).
ARTICLES: dict[str, tuple[str, str]] = {
    "ones": ("a", "inflect reads 'one...' as a vowel sound ('an ones')"),
    "oneself": ("a", "as 'ones'"),
    "uni": ("a", "inflect reads 'uni' as 'un-' ('an uni'); it is said 'you-nee'"),
}

# Verbs that lemminflect also lists as nouns ("a make", "a go") but whose noun reading is rare and
# reads as broken English in a scene ("a cat with a make"): they are placed as verbs ("ready to
# make"). Other noun-and-verb words ("dance", "walk", "smile", "watch") stay nouns.
VERBS_FIRST: dict[str, str] = dict.fromkeys(
    ("go", "make", "take", "give", "think", "want", "use", "leave", "hold", "pay", "buy", "meet",
     "help", "save", "try", "find", "keep", "say"),
    "a noun reading ('a make', 'a go') that reads as broken English in a scene",
)  # fmt: skip

# Frequent adjectives that lemminflect also lists as nouns ("a cold", "a light", "a giant"), where a
# scene wants the quality ("a cold cat"); other adjective-and-noun words are placed as the object
# ("a house", not "a house cat", which is another animal). "sparkly" is outside its lexicon.
ADJECTIVES_FIRST: dict[str, str] = dict.fromkeys(
    ("ancient", "brave", "brilliant", "calm", "clean", "cold", "cool", "elderly", "fake",
     "fancy", "fast", "fat", "fine", "flat", "free", "full", "giant", "good", "great", "heavy",
     "high", "innocent", "light", "little", "long", "lovely", "low", "modern", "noble", "old",
     "plain", "poor", "quick", "quiet", "radiant", "round", "short", "silly",
     "simple", "small", "sparkly", "square", "sweet", "thick", "warm", "wet", "wide", "wild",
     "woolly", "young"),
    "a noun reading ('a cold', 'a giant') where a scene wants the quality",
)  # fmt: skip
