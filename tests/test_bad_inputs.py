"""Every bad input is one line and exit status 2, before any model loads, touching nothing else.

One table per command. Each case runs the CLI in an empty working folder with models and
generators replaced by tripwires, and asserts: exit code 2, a single line naming the problem, no
traceback, no model loaded, and no file created, changed or deleted anywhere but in ``--out``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PARITY_DIR, write_class_folders
from test_export import build_attack

import neuronattack.models
import neuronattack.models.generators
from neuronattack.cli import main

PARITY = f"local-dir:{PARITY_DIR}"
ANALYZE = ["analyze", "--clip", PARITY, "--images", "{images}", "--out", "{out}"]
ATTACK = ["attack", "cat", "dog", "--clip", "random:ViT-B-32", "--classes", "cifar10",
          "--generator", "tiny", "--checker", "none", "--out", "{out}"]
TOP = ["neurons", "top", "--atlas", "{empty}", "--layer", "1"]

CASES = {
    "analyze": [
        ("top-k 0", [*ANALYZE, "--top-k", "0"], "--top-k must be a positive integer"),
        ("batch 0", [*ANALYZE, "--batch-size", "0"], "--batch-size must be a positive integer"),
        ("workers -1", [*ANALYZE, "--workers", "-1"], "--workers must be an integer >= 0"),
        ("device tpu", [*ANALYZE, "--device", "tpu"], "--device must be auto, cpu"),
        ("words 0", [*ANALYZE, "--words", "common:0"], "--words is not usable"),
        ("words file", [*ANALYZE, "--words", "{shared}/no-such-words.txt"], "--words"),
        ("nonzeros 0", [*ANALYZE, "--nonzeros", "0"], "--nonzeros must be a positive integer"),
        ("every 0", [*ANALYZE, "--every", "0"], "'every' must be 1 or more"),
        ("limit 0", [*ANALYZE, "--limit", "0"], "'limit' must be 1 or more"),
        ("layers text", [*ANALYZE, "--layers", "eight"], "'eight' is not a valid integer"),
        ("fp16 on cpu", [*ANALYZE, "--precision", "fp16", "--device", "cpu"], "fp16 is for GPUs"),
        ("clip tag typo", [*ANALYZE[:2], "ViT-B-32:openia", *ANALYZE[3:]], "did you mean"),
        ("out in /proc", [*ANALYZE[:-1], "/proc/neuronattack"], "cannot be written"),
        ("out under a file", [*ANALYZE[:-1], "{shared}/a-file/sub"], "is a file"),
        ("out not ours", [*ANALYZE[:-1], "{shared}/foreign"], "is not empty"),
        ("out an attack", [*ANALYZE[:-1], "{shared}/attack"], "holds a neuronattack attack"),
        ("no images", [*ANALYZE[:4], "{shared}/nowhere", *ANALYZE[5:]], "does not exist"),
    ],
    "attack": [
        ("class typo", ["attack", "cat", "dogg", *ATTACK[3:]], "did you mean dog"),
        ("same class", ["attack", "cat", "cat", *ATTACK[3:]], "are the same class"),
        ("n 0", [*ATTACK, "--n", "0"], "--n must be an integer from 1"),
        ("n -3", [*ATTACK, "--n", "-3"], "--n must be an integer from 1"),
        ("n huge", [*ATTACK, "--n", str(10**12)], "--n must be an integer from 1"),
        ("neurons 0", [*ATTACK, "--neurons", "0"], "--neurons must be a positive integer"),
        ("words 0", [*ATTACK, "--words", "0"], "--words must be a positive integer"),
        ("percentile 0", [*ATTACK, "--similarity-percentile", "0"], "--similarity-percentile"),
        ("percentile 150", [*ATTACK, "--similarity-percentile", "150"],
         "--similarity-percentile must be a number above 0 and at most 100"),
        ("batch 0", [*ATTACK, "--batch-size", "0"], "--batch-size must be a positive integer"),
        ("device tpu", [*ATTACK, "--device", "tpu"], "--device must be auto, cpu"),
        ("generator typo", [*ATTACK, "--generator", "sd-trubo"], "did you mean sd-turbo"),
        ("checker typo", [*ATTACK, "--checker", "clip:ViT-B-32:openia"], "--checker"),
        ("judge typo", [*ATTACK, "--judge", "ViT-B-32:openia"], "--judge"),
        ("writer", [*ATTACK, "--writer", "gpt"],
         "--writer is not usable (Unknown writer spec 'gpt'; use 'template'"),
        ("no images", [*ATTACK, "--images", "{shared}/nowhere"], "--images must be an existing"),
        ("atlas not ours", [*ATTACK, "--images", "{images}", "--atlas", "{shared}/foreign"],
         "is not empty"),
        ("out not ours", [*ATTACK[:-1], "{shared}/foreign"],
         "is not empty (notes.txt) and holds no neuronattack attack; choose a new or empty "
         "folder, or pass --allow-foreign-out to add our files beside them"),
        ("out an analysis, flag", [*ATTACK[:-1], "{shared}/analysis", "--allow-foreign-out"],
         "holds a neuronattack analysis"),
        ("out an analysis", [*ATTACK[:-1], "{shared}/analysis"], "holds a neuronattack analysis"),
        ("unknown option", [*ATTACK, "--nn", "3"], "No such option"),
    ],
    "neurons": [
        ("top n -3", [*TOP, "--n", "-3"], "--n must be a positive integer"),
        ("top words 0", [*TOP, "--words", "0"], "--words must be a positive integer"),
        ("search n 0", ["neurons", "search", "cat", "--atlas", "{empty}", "--n", "0"], "--n"),
        ("show words 0", ["neurons", "show", "1.2", "--atlas", "{empty}", "--words", "0"],
         "--words"),
        ("damaged atlas", ["neurons", "show", "1.2", "--atlas", "{shared}/damaged"],
         "is damaged"),
        ("not an atlas", ["neurons", "show", "1.2", "--atlas", "{empty}"], "is not an atlas"),
    ],
    "verify": [
        ("batch 0", ["verify", "--atlas", "{empty}", "--images", "{images}", "--batch-size", "0"],
         "--batch-size"),
        ("device tpu", ["verify", "--atlas", "{empty}", "--images", "{images}", "--device",
                        "tpu"], "--device"),
    ],
    "campaign": [
        ("n 0 and typos", ["campaign", "{shared}/bad.toml", "--check"], "3 problems"),
        ("not UTF-8", ["campaign", "{shared}/latin.toml", "--check"], "not UTF-8"),
        ("no file", ["campaign", "{shared}/none.toml"], "No campaign file"),
        ("device tpu", ["campaign", "{shared}/ok.toml", "--check", "--device", "tpu"],
         "--device"),
        ("out not ours", ["campaign", "{shared}/ok.toml", "--check", "--out", "{shared}/foreign"],
         "or pass --allow-foreign-out to add our files beside them"),
        ("out an attack, flag", ["campaign", "{shared}/ok.toml", "--check", "--out",
                                 "{shared}/attack", "--allow-foreign-out"],
         "holds a neuronattack attack, not the campaign"),
        ("out unwritable", ["campaign", "{shared}/ok.toml", "--out", "/proc/campaign"],
         "cannot be written"),
        ("atlas not ours", ["campaign", "{shared}/foreign-atlas.toml", "--check"],
         "[model] atlas"),
    ],
    "export": [
        ("image outside run", ["export", "{shared}/escaping", "--out", "{out}"],
         "not a PNG inside the run folder"),
        ("overwrite not ours", ["export", "{shared}/attack", "--out", "{shared}/foreign",
                                "--overwrite"], "will not delete it"),
        ("not a run", ["export", "{shared}/foreign", "--out", "{out}"], "is not a run folder"),
    ],
    "demo": [
        ("out not ours", ["demo", "--fast", "--out", "{shared}/foreign"], "is not empty"),
        ("out an attack", ["demo", "--fast", "--out", "{shared}/attack"],
         "holds a neuronattack attack, not the demo"),
    ],
    "merge": [
        ("attack folder", ["merge", "{shared}/attack"], "single attack, not a campaign"),
        ("damaged meta", ["merge", "{shared}/broken-campaign"], "is damaged"),
    ],
    "report": [
        ("not a run", ["report", "{shared}/foreign"], "is not a run folder"),
    ],
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """Inputs the cases point at; no case may change them."""
    root = tmp_path_factory.mktemp("inputs")
    write_class_folders(root / "images", ("cat", "dog"), 2)
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("someone else's work\n")
    (root / "a-file").write_text("a file, not a folder\n")
    (root / "empty").mkdir()
    build_attack(root / "attack")
    (root / "analysis").mkdir()
    (root / "analysis" / "meta.json").write_text(json.dumps(
        {"schema": "neuronattack.directions/1"}))
    damaged = root / "damaged"
    damaged.mkdir()
    (damaged / "meta.json").write_text('{"schema": "neuronattack.directions/1", "sett')
    for name in ("directions.safetensors", "atlas.safetensors"):
        (damaged / name).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")
    (damaged / "atlas.json").write_text("[]")
    # An attack whose results name a file outside it: export must not publish that file.
    escaping = build_attack(root / "escaping")
    records = [json.loads(line) for line in (escaping / "results.jsonl").read_text().splitlines()]
    records[0]["image"] = "../foreign/notes.txt"
    (escaping / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    broken = root / "broken-campaign"
    broken.mkdir()
    (broken / "meta.json").write_text('{"schema": "neuronattack.campaign/1", "units": [')
    (root / "bad.toml").write_text(
        '[model]\nclip = "random:ViT-B-32"\n[attack]\nn = 0\n[generator]\nspec = "sd-trubo"\n'
        '[judges]\nclasses = "cifar10"\nchecker = "none"\n[pairs]\nlist = [["cat", "dogg"]]\n')
    (root / "latin.toml").write_bytes(b'[model]\nclip = "caf\xe9"\n')
    (root / "foreign-atlas.toml").write_text(
        f'[model]\nclip = "random:ViT-B-32"\natlas = "{root}/foreign"\nimages = '
        f'"{root}/images"\n[judges]\nclasses = "cifar10"\n[pairs]\nlist = [["cat", "dog"]]\n')
    (root / "ok.toml").write_text(
        f'[model]\nclip = "random:ViT-B-32"\natlas = "{root}/no-atlas"\nimages = '
        f'"{root}/images"\n[judges]\nclasses = "cifar10"\nchecker = "none"\n[generator]\n'
        'spec = "tiny"\n[pairs]\nlist = [["cat", "dog"]]\n')
    return root


def snapshot(*roots: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every file and folder under ``roots`` with its size and modification time."""
    found = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(folder, name)
                if skip is not None and (path == skip or skip in path.parents):
                    continue
                stat = path.stat()
                found[str(path)] = (stat.st_size, stat.st_mtime_ns, path.is_dir())
    return found


def tripwire(*args, **kwargs):
    raise AssertionError("a model was loaded before the bad input was refused")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [pytest.param(argv, expected, id=f"{command}: {name}")
     for command, cases in CASES.items() for name, argv, expected in cases],
)
def test_bad_input_is_one_line_before_any_model_loads(argv, expected, shared, tmp_path,
                                                      monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    monkeypatch.chdir(work)
    monkeypatch.setenv("NEURONATTACK_CACHE", str(work / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(neuronattack.models, "load_clip", tripwire)
    monkeypatch.setattr(neuronattack.models.generators, "load_generator", tripwire)
    places = {"out": out, "shared": shared, "images": shared / "images",
              "empty": shared / "empty"}
    args = [arg.format(**places) for arg in argv]
    before = snapshot(work, shared, skip=out)

    result = CliRunner().invoke(main, args)

    message = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, message, result.exception)
    assert "Traceback" not in result.output
    assert expected in message, message
    assert message.startswith("error: ")
    # Campaign configs list every problem, one per line, under one heading line.
    assert "\n" not in message or message.startswith("error: ") and "problem" in message, message
    assert snapshot(work, shared, skip=out) == before
