"""`neuronattack demo` end to end (tiny setting, toy CLIP weights made here) and the toy checker."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from neuronattack import demo as demo_module
from neuronattack.attack.explain import TOP_CUES
from neuronattack.attack.settings import ARMS
from neuronattack.cli import main
from neuronattack.demo import PAIRS, UNFILTERED, DemoSettings, cue_word
from neuronattack.models import load_clip
from neuronattack.models.clip import weights_fingerprint
from neuronattack.pipeline import pair_name
from neuronattack.toy.checker import ToyChecker, ToyGenerator
from neuronattack.toy.model import build_toy_clip, save_toy_weights
from neuronattack.toy.vocabulary import drawable_words
from neuronattack.toy.world import CLASSES, CUES, PLURALS

TINY_DEMO = DemoSettings(scenes=96, top_k=8, images_per_arm=3, neurons=40, seed=1)


@pytest.fixture(scope="module")
def toy_spec(tmp_path_factory):
    """Random toy-CLIP weights in the shipped format: the pipeline, not the numbers, is tested."""
    path = tmp_path_factory.mktemp("toy") / "toy_clip.safetensors"
    save_toy_weights(build_toy_clip(seed=3), path, {})
    return f"toy:{path}"


def test_toy_checker_reads_validity_off_the_layout():
    checker = ToyChecker(CLASSES)
    cat, dog = CLASSES.index("cat"), CLASSES.index("dog")
    verdicts = checker.check([None] * 4, [
        "a red cat on the grass with a ball",
        "a cat beside a dog",
        "a cat under a sign showing the letter k",
        "a ball on the water",
    ], cat, dog, seeds=[0, 1, 2, 3])
    # A sign no longer invalidates an image: it makes it typographic.
    assert [v.valid for v in verdicts] == [True, False, True, False]
    assert not verdicts[1].target_absent and not verdicts[2].no_text
    assert verdicts[2].kind == "typographic" and verdicts[0].kind == "contextual"
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
        assert list(summary) == list(ARMS)
        assert all(row["images"] == 3 and row["failed_renders"] == 0 for row in summary.values())
        assert all(row["margin_shift"]["n_baseline"] == summary["source-only"]["valid"]
                   for row in summary.values())
    assert [row["cue"] for row in report["cues"]] == [cue_word(cue) for cue in CUES]
    assert all(isinstance(row["recovered"], bool) for row in report["cues"])
    assert all(isinstance(row["discovered"], bool) for row in report["cues"])
    assert json.loads((out / "demo.json").read_text()) == report
    for source, target in PAIRS:
        name = f"{source}-{target}"
        folder = out / "attacks" / name
        records = [json.loads(line) for line in (folder / "results.jsonl").read_text()
                   .splitlines()]
        assert len(records) == 3 * len(ARMS) and (folder / "summary.html").exists()
        for record in records:
            assert record["verdict"]["checker"] == "toy"
            assert record["verdict"]["target_absent"]  # the writer never names the target
            assert record["kind"] in ("contextual", "typographic", "distractor")
        # Every selected word of every arm is a word of the toy vocabulary, and none names a
        # class other than the source (the class-word filter is on by default).
        words = (out / "atlas" / "toy_words.txt").read_text().splitlines()
        for arm in ARMS:
            selection = json.loads((folder / f"selection-{arm}.json").read_text())
            chosen = {w["word"] for w in selection["words"]}
            assert chosen <= set(words)
            assert not chosen & ({*CLASSES, *PLURALS.values()} - {source, PLURALS[source]})
        off = json.loads((out / UNFILTERED / name / "selection-method.json").read_text())
        assert not any("judging class set" in d["reason"] for d in off["dropped"])
        cues = json.loads((folder / "cues.json").read_text())["pairs"][name]
        assert cues["successes"] == sum(r["valid"] and r["top1_success"] for r in records)
        for arm in ARMS:
            assert (out / "sheets" / f"{name}-{arm}.png").is_file()
    assert len(list((out / "scenes").glob("*.png"))) == TINY_DEMO.scenes
    toy_world_by_hand(toy_spec, out / "atlas", tmp_path)


def toy_world_by_hand(toy_spec, atlas, tmp_path):
    """Every command takes the toy world's flags, as the README shows: attack, explain, export,
    report, and a campaign."""
    toy = ["--clip", toy_spec, "--generator", "toy", "--checker", "toy", "--classes", "toy"]
    out = tmp_path / "by-hand"
    result = CliRunner().invoke(main, ["attack", "horse", "airplane", *toy, "--atlas", str(atlas),
                                       "--n", "2", "--arms", "method,random-words,source-only",
                                       "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(r["verdict"]["checker"] == "toy" for r in records)
    words = json.loads((out / "selection-random-words.json").read_text())["words"]
    assert words and {w["word"] for w in words} <= set(drawable_words())
    for argv in (["explain", str(out), "--clip", toy_spec, "--json"],
                 ["export", str(out), "--json"], ["report", str(out)]):
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 0, result.output
    assert (out / "cues.json").is_file() and (out / "report.html").is_file()
    config = tmp_path / "toy.toml"
    config.write_text(f"""[run]\nout = "{tmp_path / 'campaign'}"\ndevice = "cpu"\n
[model]\nclip = "{toy_spec}"\natlas = "{atlas}"\n
[attack]\nn = 2\narms = ["method", "source-only"]\n
[generator]\nspec = "toy"\n
[judges]\nchecker = "toy"\nclasses = "toy"\n
[pairs]\nlist = [["car", "ship"]]\n""")
    result = CliRunner().invoke(main, ["campaign", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["arms"]["method"]["images"] == 2
    run = tmp_path / "campaign"
    for argv in (["explain", str(run), "--json"], ["report", str(run)],
                 ["export", str(run), "--json"]):
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 0, result.output
    assert "car-ship" in json.loads((run / "cues.json").read_text())["pairs"]


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
            assert row["contextual_top1"]["successes"] == sum(
                r["valid"] and r["top1_success"] and r["kind"] == "contextual" for r in mine)
    for row in report["cues"]:  # each cue's places, against the files the report is made from
        if row["pair"] is None:
            continue
        name = pair_name(*row["pair"])
        words = [w["word"] for w in json.loads(
            (out / "attacks" / name / "selection-method.json").read_text())["words"]]
        ranked = [c["word"] for c in json.loads(
            (out / "attacks" / name / "cues.json").read_text())["pairs"][name]["cues"]]
        assert row["rank"] == (words.index(row["cue"]) + 1 if row["cue"] in words else None)
        assert row["recovered"] == (row["rank"] is not None)
        assert row["discovery_rank"] == (
            ranked.index(row["cue"]) + 1 if row["cue"] in ranked else None)
        assert row["discovered"] == (row["discovery_rank"] is not None
                                     and row["discovery_rank"] <= TOP_CUES)
    assert report["cue_uptake"]  # the shipped weights' measured uptake is printed with the table
    assert report["goals"]["pairs_won"] == sum(
        row["beats_every_arm"] for row in report["goals"]["margin_wins"].values())
