"""Causal cue discovery: counterfactual sentences, exact re-renders in the toy world, ranking,
determinism, and `neuronattack explain` on a run folder."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from neuronattack.attack.explain import (
    JOURNAL,
    explain_records,
    explain_run,
    rank_cues,
    read_cues,
    run_models,
    without_word,
)
from neuronattack.attack.records import AttackRecord
from neuronattack.attack.setup import make_judge
from neuronattack.cli import main
from neuronattack.models import load_clip
from neuronattack.toy.checker import ToyGenerator
from neuronattack.toy.world import CLASSES

PROMPTS = ["a car on the water with a ball", "a red car at night beside a tree",
           "a car under a sign showing the letter k, on the road"]
WORDS = [["water", "ball"], ["red", "night", "tree"], ["letter k", "road", "sign"]]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The shipped toy CLIP as judge over the toy classes, and the toy renderer."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURONATTACK_CACHE", str(tmp_path_factory.mktemp("cache")))
        judge = make_judge(load_clip("toy"), list(CLASSES), show_progress=False)
        yield judge, ToyGenerator()


def records_for(judge, generator, top1=(True, True, True)) -> list[AttackRecord]:
    """Records as an attack writes them, marked successful so that explain takes them."""
    seeds = [11, 12, 13]
    images = [r.image for r in generator.render(PROMPTS, seeds)]
    judged = judge.judge(images, CLASSES.index("car"), CLASSES.index("ship"))
    return [AttackRecord(id=f"car-ship/s0/method/{i:04d}", arm="method", index=i,
                         source="car", target="ship", prompt=prompt, words=tuple(words),
                         seed=seed, negative_prompt=None, failed=False, valid=True,
                         top1_success=success, margin=j.margin, model="toy", kind="contextual",
                         success=j.success, scores={"toy": j.as_dict()}, run_seed=0)
            for i, (prompt, words, seed, j, success)
            in enumerate(zip(PROMPTS, WORDS, seeds, judged, top1, strict=True))]


def test_without_word_removes_the_word_and_nothing_else():
    assert without_word("a red cat on the grass", "red") == "a cat on the grass"
    assert without_word("a cat with a ball", "ball") == "a cat with"
    assert without_word("a cat on the water, with a ball", "water") == "a cat on, with a ball"
    assert without_word("a bird under a sign showing the letter k", "letter k") == \
        "a bird under a sign showing"
    assert without_word("a redder cat", "red") == "a redder cat"  # whole words only
    assert without_word("Red cats and a red ball", "red") == "cats and a ball"


def test_each_word_is_measured_by_an_exact_counterfactual(toy):
    judge, generator = toy
    records = records_for(judge, generator)
    pairs, rows = explain_records(records, generator, judge, seed=0, show_progress=False)
    assert len(rows) == sum(len(words) for words in WORDS)
    for row in rows:
        record = next(r for r in records if r.id == row["id"])
        assert row["prompt"] == without_word(record.prompt, row["word"])
        again = judge.judge([generator.render([row["prompt"]], [record.seed])[0].image],
                            CLASSES.index("car"), CLASSES.index("ship"))[0]
        assert row["margin_after"] == pytest.approx(again.margin, abs=1e-6)
        assert row["effect"] == pytest.approx(record.margin - again.margin, abs=1e-6)
        assert row["necessary"] == (again.top1 != "ship")
    cues = pairs["car-ship"]["cues"]
    assert pairs["car-ship"]["successes"] == 3
    assert [c["rank"] for c in cues] == list(range(1, len(cues) + 1))
    assert [c["effect_per_success"] for c in cues] == sorted(
        (c["effect_per_success"] for c in cues), reverse=True)
    # Each word is in one of the three successes: its drop per success is a third of its drop.
    for cue in cues:
        assert cue["images"] == 1
        assert cue["effect_per_success"] == pytest.approx(cue["mean_effect"] / 3)
        low, high = cue["ci95"]
        bounds = sorted((0.0, cue["mean_effect"]))
        assert bounds[0] - 1e-9 <= low <= high <= bounds[1] + 1e-9
    # Deterministic: the same records give the same cues, to the bit.
    assert explain_records(records, generator, judge, seed=0, show_progress=False)[0] == pairs


def test_only_valid_top1_successes_are_explained(toy):
    judge, generator = toy
    records = records_for(judge, generator, top1=(True, False, True))
    records[2] = replace(records[2], valid=False)
    pairs, rows = explain_records(records, generator, judge, show_progress=False)
    assert {row["id"] for row in rows} == {records[0].id}
    assert pairs["car-ship"]["successes"] == 1


def test_rank_cues_ranks_what_the_pair_s_successes_depend_on():
    rows = [{"id": i, "word": "water", "effect": e, "necessary": n, "failed": False}
            for i, e, n in ((0, 0.3, True), (1, 0.1, False), (2, 0.2, True))]
    # "ball" has the largest drop where used, but in one success of four.
    rows += [{"id": 3, "word": "ball", "effect": 0.5, "necessary": True, "failed": False},
             {"id": 2, "word": "ball", "effect": None, "necessary": None, "failed": True}]
    water, ball = rank_cues(rows, explained=[0, 1, 2, 3], seed=0)
    assert (water["word"], water["images"], water["necessary"]) == ("water", 3, 2)
    assert water["mean_effect"] == pytest.approx(0.2) and water["necessary_rate"] == 2 / 3
    assert water["effect_per_success"] == pytest.approx(0.6 / 4)
    assert ball["mean_effect"] == 0.5 and ball["effect_per_success"] == pytest.approx(0.125)
    assert ball["images"] == 1 and ball["rank"] == 2
    assert water["ci95"][0] <= 0.15 <= water["ci95"][1] and ball["ci95"][0] == 0.0


def test_explain_command_on_an_attack_folder(toy, tmp_path, monkeypatch):
    judge, generator = toy
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "car-ship"
    folder.mkdir()
    records = records_for(judge, generator)
    (folder / "results.jsonl").write_text("".join(r.line() for r in records))
    (folder / "meta.json").write_text(json.dumps({
        "schema": "neuronattack.attack/1", "model": "toy", "generator": {"name": "toy"},
        "settings": {"source": "car", "target": "ship", "n": 3, "seed": 0}, "checker": "toy"}))
    assert run_models(folder)["generator"] == "toy" and run_models(folder)["classes"] == "toy"
    result = CliRunner().invoke(main, ["explain", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == read_cues(folder)
    expected, _ = explain_records(records, generator, judge, show_progress=False)
    assert printed["pairs"] == json.loads(json.dumps(expected))
    assert len((folder / "explain.jsonl").read_text().splitlines()) == 8
    assert "discovered cues" in (folder / "summary.html").read_text()


class CountingGenerator:
    """The toy renderer, counting its calls, interrupted (as by Ctrl-C) at call ``stop_at``."""

    def __init__(self, stop_at: int | None = None):
        self.inner, self.calls, self.stop_at = ToyGenerator(), 0, stop_at
        self.name = self.inner.name

    def render(self, prompts, seeds, negative_prompt=None):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.inner.render(prompts, seeds, negative_prompt=negative_prompt)


def attack_folder(path, records):
    path.mkdir()
    (path / "results.jsonl").write_text("".join(r.line() for r in records))
    (path / "meta.json").write_text(json.dumps({
        "schema": "neuronattack.attack/1", "model": "toy", "generator": {"name": "toy"},
        "settings": {"source": "car", "target": "ship", "n": 3, "seed": 0}, "checker": "toy"}))
    return path


def test_an_interrupted_explain_resumes_with_the_batches_it_finished(toy, tmp_path):
    judge, generator = toy
    records = records_for(judge, generator)
    whole = attack_folder(tmp_path / "whole", records)
    explain_run(whole, CountingGenerator(), judge, show_progress=False, batch=3)

    cut = attack_folder(tmp_path / "cut", records)
    with pytest.raises(KeyboardInterrupt):  # 8 counterfactuals: batches of 3, 3 and 2
        explain_run(cut, CountingGenerator(stop_at=2), judge, show_progress=False, batch=3)
    assert not (cut / "explain.jsonl").exists()
    assert len((cut / JOURNAL).read_text().splitlines()) == 2  # the header and batch 0
    again = CountingGenerator()
    explain_run(cut, again, judge, show_progress=False, batch=3)
    assert again.calls == 2  # batches 1 and 2 only
    assert (cut / "explain.jsonl").read_bytes() == (whole / "explain.jsonl").read_bytes()
    assert read_cues(cut)["pairs"] == read_cues(whole)["pairs"]
    assert not (cut / JOURNAL).exists()

    # A journal written with other batch cuts is not taken: every batch is rendered again.
    with pytest.raises(KeyboardInterrupt):
        explain_run(cut, CountingGenerator(stop_at=2), judge, show_progress=False, batch=3)
    fresh = CountingGenerator()
    explain_run(cut, fresh, judge, show_progress=False, batch=4)
    assert fresh.calls == 2
    assert (cut / "explain.jsonl").read_bytes() == (whole / "explain.jsonl").read_bytes()


def test_explain_needs_a_class_set_it_cannot_guess(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.jsonl").write_text("")
    (folder / "meta.json").write_text(json.dumps({
        "model": "ViT-B-32:openai", "generator": {"name": "sd-turbo", "model": "x/y"}}))
    result = CliRunner().invoke(main, ["explain", str(folder)])
    assert result.exit_code == 2 and "--classes" in result.output
