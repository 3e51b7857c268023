"""Campaigns end to end, offline: config validation, resume after real kills, 2-process shards.

Every run uses prompts/campaigns/tiny.toml (tiny generator, the parity CLIP) with the atlas, run
folder and model path pointed at temporary places, and one torch thread: results are compared to
the bit, and torch's float sums depend on the thread count.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import PARITY_DIR, write_class_folders

from neuronattack.attack import run as run_module
from neuronattack.campaign.config import load_campaign, parse_campaign
from neuronattack.campaign.runner import (
    Unit,
    merge_run,
    plan_units,
    render_groups,
    run_campaign,
    shard,
)
from neuronattack.cli import main
from neuronattack.errors import NeuronAttackError

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGNS = ROOT / "prompts" / "campaigns"
ARMS = 4


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """The parity model's atlas, the text cache in a temporary folder, one torch thread."""
    root = tmp_path_factory.mktemp("campaign")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURONATTACK_CACHE", str(root / "cache"))
        images = write_class_folders(root / "images", ("cat", "dog"), 8)
        result = CliRunner().invoke(main, [
            "analyze", "--clip", f"local-dir:{PARITY_DIR}", "--images", str(images), "--out",
            str(root / "atlas"), "--top-k", "4", "--words", "common:3000", "--nonzeros", "24",
            "--device", "cpu", "--json"])
        assert result.exit_code == 0, result.output
        yield {"root": root, "atlas": root / "atlas", "images": images}
    torch.set_num_threads(threads)


def tiny_config(environment, out: Path, n: int = 4, batch_size: int = 4) -> Path:
    """tiny.toml with its atlas, run folder, image count, batch size and model path made
    absolute."""
    text = (CAMPAIGNS / "tiny.toml").read_text()
    values = {"atlas": json.dumps(str(environment["atlas"])), "out": json.dumps(str(out)),
              "clip": json.dumps(f"local-dir:{PARITY_DIR}"), "n": str(n),
              "batch_size": str(batch_size)}
    for key, value in values.items():
        line = f"{key} = {value}"
        text, count = re.subn(rf"(?m)^{key} = .*$", lambda _, line=line: line, text)
        assert count == 1, key
    path = out.with_suffix(".toml")
    path.write_text(text)
    return path


def environ(environment) -> dict[str, str]:
    return {**os.environ, "NEURONATTACK_CACHE": str(environment["root"] / "cache"),
            "OMP_NUM_THREADS": "1"}


CAMPAIGN = ["-m", "neuronattack", "campaign"]


def unit_lines(out: Path) -> int:
    return sum(len(path.read_bytes().splitlines())
               for path in out.glob("units/*/s*/results.jsonl"))


def snapshot(out: Path) -> dict[str, bytes]:
    """Everything a run's results consist of: merged files, unit records, image files."""
    paths = [out / "results.jsonl", out / "summary.json",
             *sorted(out.glob("units/*/s*/results.jsonl")),
             *sorted(out.glob("units/*/s*/images/*"))]
    return {str(path.relative_to(out)): path.read_bytes() for path in paths}


@pytest.fixture(scope="module")
def reference(environment):
    """An uninterrupted single-process run: what every interrupted or sharded run must equal."""
    out = environment["root"] / "reference"
    config = tiny_config(environment, out, n=8)
    summary = run_campaign(load_campaign(config), show_progress=False)
    return {"out": out, "config": config, "summary": summary, "files": snapshot(out)}


# ---------------------------------------------------------------------------------------------
# Config


BROKEN = """\
[run]
devise = "cpu"

[model]
clip = "ViT-B-32:openai"

[attack]
n = -3
seeds = [0, 0]
arms = ["method", "metod"]

[generator]
size = 50

[judges]
classes = "cifar10"

[pairs]
list = [
  ["cat", "dog"],
  ["kat", "dog"],
  ["cat", "dog"],
]
"""


def test_every_config_error_is_reported_with_its_line_and_a_fix():
    with pytest.raises(NeuronAttackError) as caught:
        parse_campaign(BROKEN, "broken.toml")
    message = str(caught.value)
    assert message.startswith("broken.toml has 7 problems:")
    for expected in (
        "line 2: unknown key [run] devise; did you mean device?",
        "line 8: [attack] n must be an integer from 1 to 100,000, got -3; e.g. n = 32",
        "line 9: [attack] seeds lists a seed twice",
        "line 10: [attack] arms names unknown arm 'metod' (did you mean method?)",
        "line 13: [generator] size must be a positive multiple of 16",
        "line 21: [pairs] list: Unknown class 'kat'; did you mean cat?",
        "line 22: [pairs] list repeats cat → dog; remove one",
    ):
        assert expected in message, message


def test_config_structure_errors():
    text = 'clip = "toy"\n[modle]\nclip = "y"\n[pairs]\nset = "cifar10-all"\nclasses = ["a", "b"]\n'
    with pytest.raises(NeuronAttackError) as caught:
        parse_campaign(text, "c.toml")
    message = str(caught.value)
    assert "line 1: clip must sit in a table; it belongs under [model]" in message
    assert "line 2: unknown table [modle]; did you mean model?" in message
    assert "line 4: [pairs]: give only one of set, classes" in message
    with pytest.raises(NeuronAttackError, match=r"c.toml: line 2: invalid TOML"):
        parse_campaign('[run]\nout = "x\n', "c.toml")
    with pytest.raises(NeuronAttackError, match=r"set cifar10-all needs classes that .*"
                                                r"classes = \"cifar10\""):
        parse_campaign('[model]\nclip = "toy"\n[pairs]\nset = "cifar10-all"\n', "c.toml")
    with pytest.raises(NeuronAttackError, match=r"line 3: \[model\] atlas .* holds no atlas"):
        parse_campaign('[model]\nclip = "toy"\natlas = "/nowhere"\n[pairs]\nset = "toy-all"\n'
                       '[judges]\nclasses = "toy"\n', "c.toml")
    with pytest.raises(NeuronAttackError, match=r"line 4: \[model\] images must be an existing"):
        parse_campaign('[model]\nclip = "toy"\natlas = "/nowhere"\nimages = "/nowhere/either"\n'
                       '[pairs]\nset = "toy-all"\n[judges]\nclasses = "toy"\n', "c.toml")


def test_class_filter_key_reaches_the_unit_settings():
    base = '[model]\nclip = "toy"\n[judges]\nclasses = "toy"\n[pairs]\nset = "toy-all"\n'
    default = parse_campaign(base, "c.toml")
    assert default.settings("horse", "airplane", 0).class_filter is True
    off = parse_campaign(base + "[attack]\nclass_filter = false\n", "c.toml")
    assert off.settings("horse", "airplane", 0).class_filter is False
    # A different resolved config: a run started with the filter on is not resumed without it.
    assert off.resolved()["attack"]["class_filter"] is False
    assert "class_filter" not in default.resolved()["attack"]
    with pytest.raises(NeuronAttackError, match=r"line 8: \[attack\] class_filter must be true "
                                                r'or false, got "no"; e.g. class_filter = false'):
        parse_campaign(base + '[attack]\nclass_filter = "no"\n', "c.toml")


def test_example_configs_are_valid(environment, tmp_path):
    example = (CAMPAIGNS / "example.toml").read_text().replace(
        '"~/imagenet-5k"', json.dumps(str(environment["images"])))
    campaign = parse_campaign(example, "example.toml")
    assert len(campaign.pairs) == 90 and len(set(campaign.pairs)) == 90
    assert campaign.seeds == (0, 1) and campaign.judges == ("ViT-L-14:openai",)
    assert len(plan_units(campaign)) == 180
    tiny = load_campaign(tiny_config(environment, tmp_path / "tiny"))
    assert tiny.pairs == (("cat", "dog"), ("dog", "cat"), ("ship", "airplane"))
    assert tiny.attack.negative_prompt is None and tiny.generator.size == 32
    among = parse_campaign('[model]\nclip = "toy"\n[judges]\nclasses = "cifar10"\n[pairs]\n'
                           'classes = ["Cat", "dog", "ship"]\n', "among.toml")
    assert among.pairs == (("cat", "dog"), ("cat", "ship"), ("dog", "cat"), ("dog", "ship"),
                           ("ship", "cat"), ("ship", "dog"))
    assert among.out == Path("outputs/campaigns/among")


def test_cli_checks_plans_and_merges(environment, reference, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text(BROKEN)
    result = CliRunner().invoke(main, ["campaign", str(broken)])
    assert result.exit_code == 2 and "line 2: unknown key [run] devise" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["campaign", str(reference["config"]), "--check"])
    assert result.exit_code == 0, result.output
    assert "3 pairs × 2 seeds = 6 units, 192 images" in result.output
    result = CliRunner().invoke(main, ["merge", str(reference["out"]), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == reference["summary"]
    assert snapshot(reference["out"]) == reference["files"]
    result = CliRunner().invoke(main, ["merge", str(tmp_path)])
    assert result.exit_code == 2 and "is no campaign run" in result.output


def test_units_are_split_round_robin_and_cover_everything_once():
    units = [Unit(s, t, seed) for s, t in (("cat", "dog"), ("dog", "cat"), ("ship", "bird"))
             for seed in (0, 1)]
    shards = [shard(units, index, 4) for index in range(4)]
    every = [unit for part in shards for unit in part]
    assert len(every) == len(units) and set(every) == set(units)
    assert shards[1] == [units[1], units[5]]
    assert units[0].folder == "units/cat-dog/s0"


# ---------------------------------------------------------------------------------------------
# Runs


def test_run_layout_merge_and_rerun(environment, reference):
    out, summary = reference["out"], reference["summary"]
    assert {p.name for p in out.iterdir()} == {"meta.json", "campaign.toml", "results.jsonl",
                                               "summary.json", "units"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"] == reference["config"].read_text() == (out / "campaign.toml").read_text()
    assert [Unit(**u).folder for u in meta["units"]][:2] == ["units/cat-dog/s0",
                                                            "units/cat-dog/s1"]
    assert meta["models"]["generator"]["name"] == "tiny" and "versions" in meta
    unit = out / "units" / "ship-airplane" / "s1"
    assert {"images", "results.jsonl", "meta.json", "summary.html",
            "selection-method.json"} <= {p.name for p in unit.iterdir()}

    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6 * ARMS * 8
    assert [r["id"] for r in records] == sorted({r["id"] for r in records})
    assert all(r["image"].startswith("units/") and (out / r["image"]).is_file() for r in records)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["complete"] == summary["units"] == 6 and not summary["incomplete"]
    assert summary["pairs"]["cat-dog"]["arms"]["method"]["images"] == 2 * 8
    assert sum(arm["images"] for arm in summary["arms"].values()) == len(records)

    merge_run(out)
    assert snapshot(out) == reference["files"]  # merging again: the same bytes
    with pytest.MonkeyPatch.context() as patch:
        rendered = []
        patch.setattr(run_module, "_render_and_judge",
                      lambda *args, **kwargs: rendered.append(1) or [])
        run_campaign(load_campaign(reference["config"]), show_progress=False)
        assert not rendered  # a finished campaign renders nothing again
        assert snapshot(out) == reference["files"]
        changed = reference["config"].read_text().replace("n = 8", "n = 6")
        with pytest.raises(NeuronAttackError, match="other settings \\(attack.n\\)"):
            run_campaign(parse_campaign(changed, "changed.toml"), show_progress=False)


def test_a_batch_cut_in_the_middle_is_rendered_again_whole(environment, reference, tmp_path,
                                                         monkeypatch):
    """Records are appended one by one; stopping half-way through a batch's must not change any
    later image (a resumed batch of other images would differ in the last bits)."""
    config = tiny_config(environment, tmp_path / "cut", n=8)
    real, appended = run_module.append_record, []

    def stop_after_six(path, record):
        if len(appended) == 6:  # batches hold 4 records: the second is half written
            raise KeyboardInterrupt
        appended.append(record.id)
        real(path, record)

    monkeypatch.setattr(run_module, "append_record", stop_after_six)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(load_campaign(config), show_progress=False)
    monkeypatch.setattr(run_module, "append_record", real)
    run_campaign(load_campaign(config), show_progress=False)
    assert snapshot(tmp_path / "cut") == reference["files"]


def test_merge_refuses_a_record_written_twice(reference, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(reference["out"], run)
    results = run / "units" / "dog-cat" / "s1" / "results.jsonl"
    results.write_text(results.read_text() + results.read_text().splitlines()[3] + "\n")
    with pytest.raises(NeuronAttackError, match="dog-cat/s1/method/0003 is there twice.*"
                                                "Delete units/dog-cat/s1"):
        merge_run(run)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_run_resumes_to_the_same_results(environment, reference, tmp_path, stop):
    out = tmp_path / "killed"
    config = tiny_config(environment, out, n=8)
    with open(tmp_path / "stderr.txt", "wb") as log:
        process = subprocess.Popen([sys.executable, *CAMPAIGN, str(config)],
                                   env=environ(environment), cwd=ROOT, stderr=log)
        deadline = time.monotonic() + 120
        while unit_lines(out) < 20 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(stop)
        code = process.wait(timeout=60)
    total = 6 * ARMS * 8
    assert 20 <= unit_lines(out) < total, (tmp_path / "stderr.txt").read_text()
    assert code == (-signal.SIGKILL if stop == signal.SIGKILL else 130)

    partial = merge_run(out)  # merging a run cut short: what is there, and what is missing
    assert partial["incomplete"] and partial["records"] < total
    run_campaign(load_campaign(config), show_progress=False)
    assert snapshot(out) == reference["files"]
    assert not list(out.glob("units/*/s*/**/.*.tmp"))


def test_two_processes_under_accelerate_match_one(environment, reference, tmp_path):
    out = tmp_path / "sharded"
    config = tiny_config(environment, out, n=8)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", "0", *CAMPAIGN]
    result = subprocess.run([*launch, str(config)], env=environ(environment), cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 1 of 2: 3 of 6 units" in result.stderr
    assert "process 2 of 2: 3 of 6 units" in result.stderr
    assert snapshot(out) == reference["files"]


# ---------------------------------------------------------------------------------------------
# Small arms: render batches across arms and units


def launch_two(environment, config: Path) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", "0", *CAMPAIGN]
    return subprocess.run([*launch, str(config)], env=environ(environment), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_render_groups_fill_whole_batches():
    units = [Unit("cat", "dog", seed) for seed in range(7)]
    assert render_groups(units, 32, 4) == [[unit] for unit in units]
    assert render_groups(units, 12, 8) == [units[0:2], units[2:4], units[4:6], units[6:]]
    assert [len(group) for group in render_groups(units, 7, 8)] == [7]  # 8 units would be 56


def test_small_arms_fill_every_batch_and_resume_to_the_same_bytes(environment, tmp_path,
                                                                  monkeypatch):
    """3 images x 4 arms per unit, batches of 8: two units fill three batches, the middle one
    holds both. A kill inside that batch, a resume, and a 2-process run all give the same bytes."""
    batches = []
    real_render = run_module._render_and_judge

    def spy(context, batch):
        batches.append(len(batch))
        return real_render(context, batch)

    monkeypatch.setattr(run_module, "_render_and_judge", spy)
    config = tiny_config(environment, tmp_path / "small", n=3, batch_size=8)
    run_campaign(load_campaign(config), show_progress=False)
    assert batches == [8] * 9  # 6 units x 12 images, never a part batch
    expected = snapshot(tmp_path / "small")

    real_append, appended = run_module.append_record, []

    def stop_after_fourteen(path, record):
        if len(appended) == 14:  # the second batch: 4 records of one unit, 2 of the next
            raise KeyboardInterrupt
        appended.append(path)
        real_append(path, record)

    cut = tiny_config(environment, tmp_path / "cut", n=3, batch_size=8)
    monkeypatch.setattr(run_module, "append_record", stop_after_fourteen)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(load_campaign(cut), show_progress=False)
    assert len(set(appended[8:])) == 2  # the cut batch had written into both units
    monkeypatch.setattr(run_module, "append_record", real_append)
    batches.clear()
    run_campaign(load_campaign(cut), show_progress=False)
    assert batches == [8] * 8  # the first batch was whole: kept; the cut one redone whole
    assert snapshot(tmp_path / "cut") == expected

    result = launch_two(environment, tiny_config(environment, tmp_path / "two", n=3,
                                                 batch_size=8))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 1 of 2: 4 of 6 units" in result.stderr  # render groups 1 and 3
    assert snapshot(tmp_path / "two") == expected
