"""How grammatical the template writer's sentences are, before and after a change to the writer.

The words: every 100th of the 30,000 common English words (``common_english_words(30000,
profanity_filter=True)[::100]``, fixed by the wordfreq version), 300 in all. Row ``i`` asks the
template writer for one sentence with seed ``i``, the source ``SOURCES[i % 6]`` and the words
``i``, ``i + 1`` and ``i + 7`` (mod 300) of that list, so every word is in three sentences and
words meet other words (numbers meet nouns, adverbs meet gerunds).

``--save FILE`` writes the current code's sentences; without it the script prints, per row, the
saved sentence and the current one, how many of the chosen words each set of sentences uses,
and counts of errors for both by three automatic rules:

- *article*: each "a"/"an" that disagrees with inflect's choice for the word after it;
- *plural*: each form the writer made of a chosen word (a token that begins like it) that is in
  no entry of lemminflect's lexicon: "egoes", "thiefs", "germen";
- *role*: each "a"/"an" followed by one word and then the end of the phrase (a comma, a
  preposition, "and", "or", the end) where that word is in lemminflect's lexicon but not as a
  noun: "with a because", "and a quietly". Words outside the lexicon (names, rare words) pass.

    python benchmarks/sentences.py --save benchmarks/sentences-before.json
    python benchmarks/sentences.py [--before benchmarks/sentences-before.json]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

SAVED = Path(__file__).resolve().parent / "sentences-before.json"
SOURCES = ("cat", "umbrella", "golden retriever", "owl", "ukulele", "hourglass")
STEP = 100
VOCABULARY = 30000
PARTNERS = (1, 7)
# Words after which a noun phrase has ended.
BOUNDARY = (
    "and", "or", "with", "on", "in", "at", "by", "under", "beside", "near", "next", "to", "from",
    "of", "over", "above", "below", "behind", "for", "surrounded", "beneath",
)  # fmt: skip
_ARTICLE_NOUN = re.compile(rf"\b([Aa]n?) ([\w-]+)(?=$|,| (?:{'|'.join(BOUNDARY)})\b)")


def rows() -> list[dict]:
    """The fixed requests: seed, source and words of each row."""
    from neuronattack.neurons.vocabulary import common_english_words

    words = common_english_words(VOCABULARY, profanity_filter=True)[::STEP]
    return [
        {
            "seed": index,
            "source": SOURCES[index % len(SOURCES)],
            "words": [words[index], *(words[(index + k) % len(words)] for k in PARTNERS)],
        }
        for index in range(len(words))
    ]


def write_sentences() -> list[dict]:
    from neuronattack.writing import TemplateWriter

    writer = TemplateWriter()
    return [
        {**row, "text": writer.write(row["source"], row["words"], 1, row["seed"])[0].text}
        for row in rows()
    ]


def article_errors(text: str) -> list[str]:
    import inflect

    engine = inflect.engine()
    found = []
    for article, word in re.findall(r"\b([Aa]n?) ([\w-]+)", text):
        expected = engine.a(word).split(" ", 1)[0]
        if article.lower() != expected:
            found.append(f"{article} {word}")
    return found


def plural_errors(text: str, source: str, words: list[str]) -> list[str]:
    """Words the writer inflected that lemminflect's lexicon does not know: a token that is no
    chosen word and no source word, begins like a chosen word and is in no lexicon entry
    ("egoes", "thiefs", "germen")."""
    from lemminflect import getAllLemmas

    given = {w.lower() for w in words} | set(source.lower().split())
    found = []
    for token in dict.fromkeys(re.findall(r"[a-z-]+", text.lower())):
        if token in given or getAllLemmas(token):
            continue
        stems = [w.lower()[: max(3, len(w) - 2)] for w in words if " " not in w and len(w) >= 3]
        if any(token.startswith(stem) and len(token) > len(stem) + 1 for stem in stems):
            found.append(token)
    return found


def role_errors(text: str) -> list[str]:
    """Articles whose noun is a word lemminflect knows, but not as a noun: "with a because",
    "a quietly"."""
    from lemminflect import getAllLemmas

    found = []
    for article, word in _ARTICLE_NOUN.findall(text):
        classes = getAllLemmas(word.lower())
        if classes and "NOUN" not in classes and "PROPN" not in classes:
            found.append(f"{article} {word}")
    return found


def counts(sentences: list[dict]) -> dict[str, int]:
    from neuronattack.writing.matching import words_in

    return {
        "sentences": len(sentences),
        "words used": sum(len(words_in(s["text"], s["words"])) for s in sentences),
        "article": sum(len(article_errors(s["text"])) for s in sentences),
        "plural": sum(len(plural_errors(s["text"], s["source"], s["words"])) for s in sentences),
        "role": sum(len(role_errors(s["text"])) for s in sentences),
        "without source": sum(s["source"] not in s["text"] for s in sentences),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save", type=Path, help="write the current code's sentences here")
    parser.add_argument("--state", default="", help="with --save: the code state they come from")
    parser.add_argument("--before", type=Path, default=SAVED)
    args = parser.parse_args()
    current = write_sentences()
    if args.save:
        args.save.write_text(
            json.dumps({"state": args.state, "sentences": current}, indent=1) + "\n",
            encoding="utf-8",
        )
        return
    saved = json.loads(args.before.read_text(encoding="utf-8"))
    before = saved["sentences"]
    if [{k: v for k, v in s.items() if k != "text"} for s in before] != [
        {k: v for k, v in s.items() if k != "text"} for s in current
    ]:
        raise SystemExit(f"{args.before} holds other requests; save it again from the old code.")
    print(f"before: {saved['state']}\n")
    for old, new in zip(before, current, strict=True):
        mark = "=" if old["text"] == new["text"] else "≠"
        print(f"{old['seed']:3d} {', '.join(old['words'])}\n    before: {old['text']}")
        print(f"  {mark} after:  {new['text']}")
    print(f"\nchanged: {sum(o['text'] != n['text'] for o, n in zip(before, current, strict=True))}")
    print(f"{'rule':16s} {'before':>7s} {'after':>7s}")
    old_counts, new_counts = counts(before), counts(current)
    for key in old_counts:
        print(f"{key:16s} {old_counts[key]:7d} {new_counts[key]:7d}")


if __name__ == "__main__":
    main()
