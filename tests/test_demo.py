"""`neuronattack demo` end to end (tiny setting, toy CLIP weights made here) and the toy checker."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from neuronattack import demo as demo_module
from neuronattack.cli import main
from neuronattack.demo import PAIRS, DemoSettings, cue_word
from neuronattack.models import load_clip
from neuronattack.models.clip import weights_fingerprint
from neuronattack.toy.checker import ToyChecker, ToyGenerator
from neuronattack.toy.model import build_toy_clip, save_toy_weights
from neuronattack.toy.world import CLASSES, CUES

TINY_DEMO = DemoSettings(scenes=96, top_k=8, images_per_arm=3, neurons=40, seed=1)


@pytest.fixture(scope="module")
def toy_spec(tmp_path_factory):
    """Random toy-CLIP weights in the shipped format: the pipeline, not the numbers, is tested."""
    path = tmp_path_factory.mktemp("toy") / "toy_clip.safetensors"
    save_toy_weights(build_toy_clip(seed=3), path, {})
    return f"toy:{path}"


def test_toy_checker_reads_validity_off_the_sentence():
    checker = ToyChecker(CLASSES)
    cat, dog = CLASSES.index("cat"), CLASSES.index("dog")
    verdicts = checker.check([None] * 4, [
        "a red cat on the grass with a ball",
        "a cat beside a dog",
        "a cat under a sign showing the letter k",
        "a ball on the water",
    ], cat, dog)
    assert [v.valid for v in verdicts] == [True, False, False, False]
    assert not verdicts[1].target_absent and not verdicts[2].no_text
    assert not verdicts[3].source_present


def test_toy_generator_is_seeded_and_never_fails():
    generator = ToyGenerator()
    first = generator.render(["a cat on the snow", "a dog"], [5, 6])
    again = generator.render(["a cat on the snow"], [5])
    assert [r.failed for r in first] == [False, False]
    assert first[0].image.tobytes() == again[0].image.tobytes()
    assert generator.settings["size"] == [64, 64]


def test_demo_runs_every_pair_and_arm(toy_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo_module, "FAST", TINY_DEMO)
    monkeypatch.setattr(demo_module, "load_clip", lambda spec: load_clip(toy_spec))
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--fast", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report["pairs"]) == [f"{s} → {t}" for s, t in PAIRS]
    for summary in report["pairs"].values():
        assert set(summary) == {"method", "random-neurons", "similar-words", "source-only"}
        assert all(row["images"] == 3 and row["failed_renders"] == 0 for row in summary.values())
    assert [row["cue"] for row in report["cues"]] == [cue_word(cue) for cue in CUES]
    assert all(isinstance(row["recovered"], bool) for row in report["cues"])
    assert json.loads((out / "demo.json").read_text()) == report
    for source, target in PAIRS:
        folder = out / "attacks" / f"{source}-{target}"
        records = [json.loads(line) for line in (folder / "results.jsonl").read_text()
                   .splitlines()]
        assert len(records) == 12 and (folder / "summary.html").exists()
        for record in records:
            assert record["verdict"]["checker"] == "toy"
            assert record["verdict"]["target_absent"]  # the writer never names the target
        # Every selected word of the method is a word of the toy vocabulary.
        selection = json.loads((folder / "selection-method.json").read_text())
        words = (out / "toy_words.txt").read_text().splitlines()
        assert {w["word"] for w in selection["words"]} <= set(words)
    assert len(list((out / "scenes").glob("*.png"))) == TINY_DEMO.scenes


def test_demo_folder_of_other_weights_starts_afresh(toy_spec, tmp_path):
    out = tmp_path / "demo"
    (out / "atlas").mkdir(parents=True)
    (out / "attacks" / "cat-dog").mkdir(parents=True)
    (out / "atlas" / "meta.json").write_text(json.dumps({"vision_fingerprint": "0" * 16}))
    clip = load_clip(toy_spec)
    demo_module.forget_other_weights(out, clip)
    assert not (out / "atlas").exists() and not (out / "attacks").exists()
    (out / "atlas").mkdir()
    fingerprint = weights_fingerprint(clip.model.visual)
    (out / "atlas" / "meta.json").write_text(json.dumps({"vision_fingerprint": fingerprint}))
    demo_module.forget_other_weights(out, clip)
    assert (out / "atlas" / "meta.json").exists()


def test_fast_demo_with_the_shipped_toy_clip(tmp_path, monkeypatch):
    """The README's first command at its CI setting: shipped weights, every pair and arm, the
    table agrees with the records it summarises, and a second run in a fresh folder (warm text
    cache) gives the same table."""
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    reports = []
    for name in ("demo", "again"):
        result = CliRunner().invoke(main, ["demo", "--fast", "--out", str(tmp_path / name),
                                           "--json"])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    assert reports[0] == reports[1]
    report, out = reports[0], tmp_path / "demo"
    per_arm = demo_module.FAST.images_per_arm
    for source, target in PAIRS:
        records = [json.loads(line) for line in
                   (out / "attacks" / f"{source}-{target}" / "results.jsonl").read_text()
                   .splitlines()]
        for arm, row in report["pairs"][f"{source} → {target}"].items():
            mine = [r for r in records if r["arm"] == arm]
            assert len(mine) == row["images"] == per_arm and row["failed_renders"] == 0
            assert row["valid_success"]["successes"] == sum(r["success"] and r["valid"]
                                                            for r in mine)
            assert row["success"]["successes"] == sum(r["success"] for r in mine)
    recovered = [row for row in report["cues"] if row["recovered"]]
    assert all(row["rank"] >= 1 for row in recovered)
