"""How well can a CLIP's own scores tell that the source is still recognisable? Measured where the
truth is known: the toy world's demo images.

With real models validity is estimated by a checker CLIP (docs/success.md); the first release's
rule is "the source is among its top-5 classes". Here every demo image has the exact answer (the
source's drawn size against the smallest size of its class in training scenes, from the toy
checker), and every record holds the toy CLIP's zero-shot scores (top-5, the source's
probability), so candidate rules can be scored against the truth. Only images where the source is
drawn at all are counted. Caveat: the scoring CLIP is the attacked toy CLIP, not a second model.

Prints, per rule, agreement with the truth and its recall/precision of "not recognisable", and the
ratio of each rule's agreement to the top-5 baseline's, all from the same images.

    python benchmarks/recognisability.py outputs/demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuronattack.attack.records import RESULTS, AttackRecord, read_records

RULES = {
    "top-5 (baseline)": lambda s, source: source in s["top5"],
    "top-3": lambda s, source: source in s["top5"][:3],
    "top-1": lambda s, source: s["top1"] == source,
    "p(source) >= 0.05": lambda s, source: s["p_source"] >= 0.05,
    "p(source) >= 0.2": lambda s, source: s["p_source"] >= 0.2,
}


def load(folder: Path) -> list[AttackRecord]:
    records = []
    for path in sorted(folder.glob(f"attacks*/*/{RESULTS}")):
        records += read_records(path)
    return [r for r in records if not r.failed and r.verdict["source_present"]]


def score(records: list[AttackRecord], rule) -> dict:
    truth = [r.verdict["recognisable"] for r in records]
    guess = [rule(r.scores[r.model], r.source) for r in records]
    agree = sum(t == g for t, g in zip(truth, guess, strict=True)) / len(records)
    caught = sum(not t and not g for t, g in zip(truth, guess, strict=True))
    return {"agreement": agree,
            "recall_unrecognisable": caught / max(1, truth.count(False)),
            "precision_unrecognisable": caught / max(1, guess.count(False))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", type=Path, help="a `neuronattack demo` output folder")
    folder = parser.parse_args().demo
    records = load(folder)
    unrecognisable = sum(not r.verdict["recognisable"] for r in records)
    print(f"{len(records)} images with the source drawn, {unrecognisable} of them too small to be "
          "recognisable (toy checker, exact)")
    baseline = score(records, RULES["top-5 (baseline)"])["agreement"]
    for name, rule in RULES.items():
        row = score(records, rule)
        print(f"{name:20s} agreement {row['agreement']:.1%} ({row['agreement'] / baseline:.2f}x "
              f"top-5)  catches {row['recall_unrecognisable']:.0%} of unrecognisable sources, "
              f"{row['precision_unrecognisable']:.0%} of its rejections right")


if __name__ == "__main__":
    main()
