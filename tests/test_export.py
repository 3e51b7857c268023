"""`export`: a run as an imagefolder / WebDataset test set, loaded back with their own readers.

The runs are built by hand (tiny PNGs and records in run_attack's format), so these tests cover
every outcome without running an attack. ``build_campaign`` is shared with test_report.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neuronattack.campaign.export import export_run, load_run
from neuronattack.errors import NeuronAttackError

ATTACKED, OTHER = "ViT-B-32:openai", "ViT-L-14:openai"
CHECKER = f"clip:{OTHER}"
MALICIOUS = '<script>alert(1)</script> & "quotes"'
GENERATOR = {
    "name": "tiny", "model": "tiny-random-sd", "revision": None, "preset": "tiny",
    "safety_checker": "absent", "meaningless": True, "pipeline": "StableDiffusionPipeline",
    "steps": 2, "guidance": 1, "size": [16, 16], "batch_size": 2,
    "scheduler": "EulerDiscreteScheduler", "dtype": "float32", "device": "cpu",
    "retry_seed_offset": 1_000_003,
}
# (arm, index): (outcome, does the other judge also call it the target); per pair below.
# Outcomes: fv fooled+valid, ff fooled+filtered, nv not fooled+valid, nf not fooled+filtered.
PLAN = {
    ("tabby cat", "Golden Retriever"): {
        ("method", 0): ("fv", True), ("method", 1): ("ff", False), ("method", 2): ("nv", False),
        ("source-only", 0): ("nv", False), ("source-only", 1): ("failed", False),
        ("source-only", 2): ("nf", False),
    },
    ("goldfish", "great white shark"): {
        ("method", 0): ("fv", True), ("method", 1): ("failed", False), ("method", 2): ("nv", True),
        ("source-only", 0): ("nv", False), ("source-only", 1): ("fv", False),
        ("source-only", 2): ("nv", False),
    },
}
# What PLAN adds up to: images per outcome split, and failed renders.
EXPECTED_SPLITS = {"fooled_valid": 3, "fooled_filtered": 1, "not_fooled_valid": 5,
                   "not_fooled_filtered": 1}


def slug(name: str) -> str:
    return name.lower().replace(" ", "_")


def scores(fooled: bool, margin: float, source: str, target: str) -> dict:
    top = [target, source] if fooled else [source, target]
    return {"success": fooled, "source_similarity": 0.25, "target_similarity": 0.25 + margin,
            "margin": margin, "top1": top[0], "top5": top + ["goldfinch", "tench", "jay"],
            "p_source": 0.3, "p_target": 0.6 if fooled else 0.1}


def make_record(source: str, target: str, arm: str, index: int, outcome: str, transfers: bool,
                image: str | None, meaningless: bool) -> dict:
    pair = f"{slug(source)}-{slug(target)}"
    words = [] if arm == "source-only" else ["leash", "fetch"][: index + 1]
    record = {
        "id": f"{pair}/s0/{arm}/{index:04d}", "source": source, "target": target, "arm": arm,
        "index": index,
        "prompt": MALICIOUS if (arm, index) == ("method", 0) else f"a {source} {' '.join(words)}",
        "negative_prompt": "text, letters", "words": words,
        "neurons": [f"9.{100 + i}" for i in range(len(words))], "seed": 40 + index,
        "requested_seed": 40 + index, "retried": False, "failed": outcome == "failed",
        "failure": "all black" if outcome == "failed" else None,
        "generator": {**GENERATOR, "meaningless": meaningless}, "model": ATTACKED,
        "atlas": "0123456789abcdef", "writer": "template", "run_seed": 0,
    }
    if outcome == "failed":
        return record | {"image": None, "scores": {}, "success": False, "valid": False,
                         "verdict": None}
    fooled, valid = outcome in ("fv", "ff"), outcome in ("fv", "nv")
    margin = 0.05 * (index + 1) * (1 if fooled else -1)
    return record | {
        "image": image, "success": fooled, "valid": valid,
        "scores": {ATTACKED: scores(fooled, margin, source, target),
                   OTHER: scores(transfers, 0.01 if transfers else -0.02, source, target)},
        "verdict": {"valid": valid, "source_present": valid or outcome == "ff",
                    "target_absent": valid, "no_text": True, "checker": CHECKER},
    }


def unit_meta(source: str, target: str, meaningless: bool, classes: int = 1000) -> dict:
    return {
        "schema": "neuronattack.attack/1",
        "settings": {"source": source, "target": target, "n": 3, "arms": ["method", "source-only"],
                     "n_neurons": 100, "n_words": 50, "seed": 0,
                     "negative_prompt": "text, letters"},
        "model": ATTACKED, "atlas": {"path": "/atlas", "hash": "0123456789abcdef"},
        "generator": {**GENERATOR, "meaningless": meaningless}, "writer": "template",
        "judges": [ATTACKED, OTHER], "checker": CHECKER, "classes": classes,
        "versions": {"neuronattack": "0.1.0"},
    }


def save_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def selection(source: str, target: str) -> dict:
    return {"source": source, "target": target, "arm": "method",
            "neurons": [{"neuron": "9.100", "projection": 0.8}, {"neuron": "9.101",
                                                                 "projection": -0.5}],
            "words": [{"word": "leash", "score": 0.4, "neuron": "9.100", "coefficient": 0.5,
                       "projection": 0.8},
                      {"word": "fetch", "score": 0.2, "neuron": "9.101", "coefficient": -0.4,
                       "projection": -0.5}],
            "dropped": [{"word": "puppy", "reason": "similar to target", "score": 0.9}]}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def build_campaign(root: Path, meaningless: bool = True) -> Path:
    """A campaign folder: two ImageNet pairs, two arms, two judges, every outcome (see PLAN)."""
    records = []
    for (source, target), plan in PLAN.items():
        pair = f"{slug(source)}-{slug(target)}"
        unit = root / "units" / pair / "s0"
        mine = []
        for (arm, index), (outcome, transfers) in plan.items():
            name = f"images/{pair}-s0-{arm}-{index:04d}.png"
            if outcome != "failed":
                save_png(unit / name, len(records) + len(mine))
            mine.append(make_record(source, target, arm, index, outcome, transfers, name,
                                    meaningless))
        (unit / "meta.json").write_text(json.dumps(unit_meta(source, target, meaningless)))
        (unit / "selection-method.json").write_text(json.dumps(selection(source, target)))
        write_jsonl(unit / "results.jsonl", mine)
        records += [r | {"image": r["image"] and f"units/{pair}/s0/{r['image']}"} for r in mine]
    (root / "meta.json").write_text(json.dumps({"schema": "neuronattack.campaign/1",
                                                "versions": {"neuronattack": "0.1.0"}}))
    write_jsonl(root / "results.jsonl", records)
    return root


def build_attack(root: Path) -> Path:
    """A single attack folder (run_attack's layout) over CIFAR-10 names."""
    records = []
    for index, outcome in enumerate(("fv", "nv", "failed")):
        name = f"images/cat-dog-s0-method-{index:04d}.png"
        if outcome != "failed":
            save_png(root / name, index)
        records.append(make_record("cat", "dog", "method", index, outcome, False, name, False))
    (root / "meta.json").write_text(json.dumps(unit_meta("cat", "dog", False, classes=10)))
    (root / "selection-method.json").write_text(json.dumps(selection("cat", "dog")))
    write_jsonl(root / "results.jsonl", records)
    return root


@pytest.fixture(scope="module")
def datasets_module(tmp_path_factory):
    """`datasets`, imported offline with its caches in a temporary folder."""
    home = tmp_path_factory.mktemp("hf-home")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("HF_DATASETS_OFFLINE", "1"), ("HF_HUB_OFFLINE", "1"),
                            ("HF_HOME", str(home)), ("HF_DATASETS_CACHE", str(home / "datasets")),
                            ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")):
            patch.setenv(name, value)
        yield pytest.importorskip("datasets")


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_load_run_reads_campaigns_and_single_attacks(tmp_path):
    campaign = load_run(build_campaign(tmp_path / "campaign"))
    assert campaign.campaign and sorted(campaign.units) == [
        "units/goldfish-great_white_shark/s0", "units/tabby_cat-golden_retriever/s0"]
    assert len(campaign.records) == 12
    assert all((campaign.base / r.image).is_file() for r in campaign.records if r.image)
    assert campaign.unit_of(campaign.records[0]) == "units/tabby_cat-golden_retriever/s0"

    attack = load_run(build_attack(tmp_path / "attack"))
    assert not attack.campaign and list(attack.units) == ["."]
    assert attack.unit_of(attack.records[0]) == "."
    with open(attack.base / "results.jsonl", "a") as handle:  # a record redone after a crash
        handle.write(replace(attack.records[0], prompt="redone").line())
    again = load_run(attack.base)
    assert len(again.records) == 3 and again.records[0].prompt == "redone"

    with pytest.raises(NeuronAttackError, match="not a run folder"):
        load_run(tmp_path / "nowhere")


def test_imagefolder_export_loads_with_datasets(tmp_path, datasets_module):
    run = build_campaign(tmp_path / "run")
    out = tmp_path / "dataset"
    result = export_run(run, out)
    assert result.splits == EXPECTED_SPLITS and result.failed == 2

    classes = json.loads((out / "classes.json").read_text())
    assert classes == [
        {"index": 1, "name": "goldfish", "wnid": "n01443537", "folder": "n01443537"},
        {"index": 2, "name": "great white shark", "wnid": "n01484850", "folder": "n01484850"},
        {"index": 207, "name": "Golden Retriever", "wnid": "n02099601", "folder": "n02099601"},
        {"index": 281, "name": "tabby cat", "wnid": "n02123045", "folder": "n02123045"},
    ]
    # The label folders hold the source class, ImageNet-style (what `verify --images` reads).
    assert sorted(p.name for p in (out / "fooled_valid").iterdir()) == [
        "metadata.jsonl", "n01443537", "n02123045"]
    assert not any(p.is_symlink() for p in out.rglob("*"))

    for split, count in EXPECTED_SPLITS.items():
        data = datasets_module.load_dataset("imagefolder", data_dir=str(out / split),
                                            split="train", cache_dir=str(tmp_path / "cache"))
        assert data.num_rows == count
        for row in data:
            assert row["outcome"] == split and row["image"].size == (16, 16)
            assert row["label"] == {"tabby cat": 281, "goldfish": 1}[row["source"]]
            assert row["target_label"] == {"tabby cat": 207, "goldfish": 2}[row["source"]]
            assert row["fooled"] == split.startswith("fooled")
            assert row["valid"] == split.endswith("_valid")
            assert set(json.loads(row["scores"])) == {ATTACKED, OTHER}
            assert row["steps"] == 2 and row["guidance"] == 1.0 and row["width"] == 16
            assert row["generator_revision"] == "" and row["meaningless"] is True
            assert row["atlas"] == "0123456789abcdef" and row["checker"] == CHECKER

    # Every split at once, named by the card's configs: the metadata schemas must agree.
    everything = datasets_module.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {name: part.num_rows for name, part in everything.items()} == EXPECTED_SPLITS
    first = everything["fooled_valid"][0]
    assert first["prompt"] == '<script>alert(1)</script> & "quotes"'
    assert json.loads(first["words"]) == ["leash"] and json.loads(first["neurons"]) == ["9.100"]
    assert first["seed"] == 40 and first["negative_prompt"] == "text, letters"

    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "- split: fooled_valid" in card
    assert "| fooled_valid | 3 |" in card and "2 failed renders (no image) not exported" in card
    assert "| tabby cat → Golden Retriever | source-only | 0 | 0 | 1 | 1 | 1 |" in card
    assert "| goldfish → great white shark | method | 1 | 0 | 1 | 0 | 1 |" in card
    assert "these images are noise" in card and "label is the source class" in card
    assert "tiny (tiny-random-sd), 2 steps, guidance 1, 16x16" in card


def test_webdataset_export_by_pair_reads_back(tmp_path, datasets_module):
    webdataset = pytest.importorskip("webdataset")
    out = tmp_path / "shards"
    result = export_run(build_campaign(tmp_path / "run"), out, format="webdataset",
                        split_by="pair", shard_size=2)
    assert result.splits == {"tabby_cat_to_golden_retriever": 5,
                             "goldfish_to_great_white_shark": 5}
    shards = sorted(p.name for p in out.glob("*.tar"))
    assert shards == [f"{pair}-{i:06d}.tar" for pair in ("goldfish_to_great_white_shark",
                                                         "tabby_cat_to_golden_retriever")
                      for i in range(3)]
    samples = list(webdataset.WebDataset([str(out / name) for name in shards],
                                         shardshuffle=False))
    assert len(samples) == 10 and len({s["__key__"] for s in samples}) == 10
    for sample in samples:
        row = json.loads(sample["json"])
        assert sample["__key__"] == row["id"].replace("/", "-")
        assert int(sample["cls"]) == row["label"]
        assert f"/{row['pair'].replace('-', '_to_')}-" in sample["__url__"]
        assert Image.open(io.BytesIO(sample["png"])).size == (16, 16)
    outcomes = sorted(json.loads(s["json"])["outcome"] for s in samples)
    assert outcomes == sorted(o for o, n in EXPECTED_SPLITS.items() for _ in range(n))
    card = (out / "README.md").read_text()
    split = "goldfish_to_great_white_shark"
    assert f'- split: {split}\n    path: "{split}-*.tar"' in card
    assert "tabby_cat_to_golden_retriever-{000000..000002}.tar" in card
    # Hugging Face's own WebDataset loader reads the shards through the card's configs.
    loaded = datasets_module.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {name: part.num_rows for name, part in loaded.items()} == result.splits
    assert loaded["goldfish_to_great_white_shark"][0]["json"]["fooled"] is True


def test_export_refuses_to_overwrite_and_reruns_to_the_same_bytes(tmp_path):
    run = build_campaign(tmp_path / "run")
    out = tmp_path / "dataset"
    export_run(run, out, format="webdataset")
    digest = tree_digest(out)
    with pytest.raises(NeuronAttackError, match="--overwrite"):
        export_run(run, out, format="webdataset")
    (out / "stale.txt").write_text("from before")
    export_run(run, out, format="webdataset", overwrite=True)
    assert tree_digest(out) == digest  # same bytes, stale file gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "run"]  # no temp folders

    with pytest.raises(NeuronAttackError, match="holds the run"):
        export_run(run, run, overwrite=True)
    with pytest.raises(NeuronAttackError, match="format"):
        export_run(run, tmp_path / "x", format="zip")
    (run / "units/goldfish-great_white_shark/s0/images/"
     "goldfish-great_white_shark-s0-method-0000.png").unlink()
    with pytest.raises(NeuronAttackError, match="1 images .* missing"):
        export_run(run, tmp_path / "y")
    assert not (tmp_path / "y").exists()


def test_single_attack_over_a_custom_class_set_exports(tmp_path):
    out = tmp_path / "dataset"
    result = export_run(build_attack(tmp_path / "attack"), out)
    assert result.splits == {"fooled_valid": 1, "not_fooled_valid": 1} and result.failed == 1
    assert json.loads((out / "classes.json").read_text()) == [
        {"index": 3, "name": "cat", "wnid": None, "folder": "cat"},
        {"index": 5, "name": "dog", "wnid": None, "folder": "dog"},
    ]
    rows = [json.loads(line) for line in (out / "not_fooled_valid/metadata.jsonl").read_text()
            .splitlines()]
    assert [(r["file_name"], r["label"], r["meaningless"]) for r in rows] == [
        ("cat/cat-dog-s0-method-0001.png", 3, False)]
    assert (out / "not_fooled_valid" / rows[0]["file_name"]).is_file()
    assert "Class set: `cifar10`" in (out / "README.md").read_text()
