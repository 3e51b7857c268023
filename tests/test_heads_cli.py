"""`ablate`, `heads`, `debias` and `retrieve` end to end on the shipped toy CLIP and small drawn
toy sets, through the CLI; and the toy sets themselves."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
from click.testing import CliRunner

from neuronattack.cli import main
from neuronattack.heads.toy import (
    NEUTRAL_BACKGROUNDS,
    OTHER_CLASSES,
    cue_groups,
    draw_attribute_set,
    draw_cue_split,
    draw_labelled,
)


@pytest.fixture(scope="module")
def toy_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads-toy")
    return {"labelled": draw_labelled(root / "labelled", 36),
            "split": draw_cue_split(root / "split", per_group=3),
            "attributes": root / "attributes",
            "records": draw_attribute_set(root / "attributes", 24),
            "root": root}


def run(*args: str):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_the_cue_split_has_the_declared_groups(toy_sets):
    with toy_sets["split"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    groups = cue_groups()
    assert Counter(row["group"] for row in rows) == {name: 3 for name, _, _ in groups}
    allowed = {name: set(classes) for name, classes, _ in groups}
    assert all(row["label"] in allowed[row["group"]] for row in rows)
    assert "plain" in NEUTRAL_BACKGROUNDS and "water" not in NEUTRAL_BACKGROUNDS
    assert "ship" not in OTHER_CLASSES and "cat" in OTHER_CLASSES
    again = draw_cue_split(toy_sets["root"] / "split-again", per_group=3)
    assert again.read_text() == toy_sets["split"].read_text()
    assert (toy_sets["root"] / "split-again" / rows[5]["image"]).read_bytes() == (
        toy_sets["split"].parent / rows[5]["image"]).read_bytes()


@pytest.fixture(scope="module")
def roles_dir(toy_sets, tmp_path_factory):
    out = tmp_path_factory.mktemp("roles")
    result = run("heads", "build", "--clip", "toy", "--images", toy_sets["labelled"], "--out", out,
                 "--last", "2", "--texts-per-head", "4", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["heads"]) == 8 and data["accuracy"]["classes"] >= 2
    return out


def test_ablate_writes_the_curve(toy_sets, tmp_path):
    result = run("ablate", "--clip", "toy", "--images", toy_sets["labelled"], "--out",
                 tmp_path / "curve", "--json")
    assert result.exit_code == 0, result.output
    curve = json.loads(result.stdout)
    assert curve["attention"][0] == curve["baseline"]
    assert curve["attention_and_mlps"][0] == curve["mlps_ablated"]
    assert len(curve["attention"]) == 7 and curve["images"] == 36
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert json.loads((tmp_path / "curve.json").read_text())["schema"] == "neuronattack.ablation/1"


def test_heads_browse(roles_dir):
    listed = json.loads(run("heads", "list", "--roles", roles_dir, "--json").stdout)
    assert [card["head"] for card in listed] == [f"{layer}.{h}" for layer in (4, 5)
                                                 for h in range(4)]
    shown = run("heads", "show", "5.1", "--roles", roles_dir, "--json")
    card = json.loads(shown.stdout)
    assert card["head"] == "5.1" and len(card["texts"]) == 4
    word = card["texts"][0]["text"]
    hits = json.loads(run("heads", "search", word, "--roles", roles_dir, "--json").stdout)
    assert {"head": "5.1", "text": word, "rank": 0,
            "variance_explained": card["texts"][0]["variance_explained"]} in hits
    plain = run("heads", "show", "5.1", "--roles", roles_dir)
    assert plain.exit_code == 0 and word in plain.stdout
    missing = run("heads", "show", "1.0", "--roles", roles_dir)
    assert missing.exit_code == 2 and "not in this artifact" in missing.output
    assert "Traceback" not in missing.output


def test_debias_by_role_and_by_heads(toy_sets, roles_dir):
    result = run("debias", "--csv", toy_sets["split"], "--roles", roles_dir, "--heads", "4.0,5.3",
                 "--draws", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["heads"] == ["4.0", "5.3"] and report["images"] == 3 * len(cue_groups())
    assert set(report["before"]["groups"]) == {name for name, _, _ in cue_groups()}
    assert len(report["random"]["heads"]) == 3
    assert all(len(heads) == 2 for heads in report["random"]["heads"])
    both = run("debias", "--csv", toy_sets["split"], "--roles", roles_dir)
    assert both.exit_code == 2 and "exactly one of --heads" in both.output
    unknown = run("debias", "--csv", toy_sets["split"], "--roles", roles_dir, "--role", "tuba")
    assert unknown.exit_code == 2 and "No text of the pool matches" in unknown.output
    by_role = run("debias", "--csv", toy_sets["split"], "--roles", roles_dir, "--role",
                  "background", "--min-share", "0", "--draws", "2")
    assert by_role.exit_code == 0, by_role.output
    assert "worst group" in by_role.stdout


def test_retrieve_by_image_and_by_text(toy_sets, roles_dir):
    query = toy_sets["attributes"] / toy_sets["records"][0]["image"]
    result = run("retrieve", query, "--images", toy_sets["attributes"], "--roles", roles_dir,
                 "--heads", "5.0,5.1", "--n", "5", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["heads"]["heads"] == ["5.0", "5.1"] and found["full_embedding"]["heads"] == []
    for side in ("heads", "full_embedding"):
        images = [row["image"] for row in found[side]["results"]]
        assert len(images) == 5 and str(query) not in images  # the query itself is left out
    text = run("retrieve", "water", "--images", toy_sets["attributes"], "--roles", roles_dir,
               "--role", "background", "--min-share", "0", "--n", "3")
    assert text.exit_code == 0, text.output


def test_bad_input_is_one_line(toy_sets, tmp_path):
    zero = run("heads", "build", "--clip", "toy", "--images", toy_sets["labelled"], "--out",
               tmp_path / "x", "--last", "0")
    assert zero.exit_code == 2 and "--last must be a positive integer" in zero.output
    unlabelled = run("ablate", "--clip", "toy", "--images", toy_sets["attributes"], "--out",
                     tmp_path / "curve")
    assert unlabelled.exit_code == 2 and "class folders" in unlabelled.output
    for result in (zero, unlabelled):
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_the_toy_measurement_runs_end_to_end_on_tiny_sets(tmp_path):
    from neuronattack.errors import NeuronAttackError
    from neuronattack.heads.toy import measure

    result = measure(tmp_path / "m", labelled=36, per_group=2, attribute_images=24, last=2,
                     draws=2, show_progress=False)
    assert result["ablation"]["attention"][0] == result["ablation"]["baseline"]
    assert set(result["shortcut_carriers"]) == {"plain", "every head", "every MLP"}
    assert set(result["shortcut_carriers"]["plain"]["groups"]) == {
        name for name, _, _ in cue_groups()}
    assert set(result["retrieval_precision_at_10"]) == {"colour", "background"}
    assert (tmp_path / "m" / "measure.json").exists()
    with pytest.raises(NeuronAttackError, match="not empty"):
        measure(tmp_path / "m")
