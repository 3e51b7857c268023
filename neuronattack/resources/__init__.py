"""Text resources that ship inside the package, so a wheel install finds them like a checkout does.

One home for their paths: code imports these names instead of building paths of its own.
"""

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent
SENTENCE_TEMPLATES = RESOURCES / "sentence_templates.txt"
# The block list and the word lists' provenance and licence (README.md beside it).
WORD_LISTS = RESOURCES / "words"
PROFANITY_LIST = WORD_LISTS / "profanity.txt"
