"""Reliability: no stale atlas, damaged files named, shared modes, one writer per folder, early
checkpoints, 16-bit images, honest campaign checks, readable logs (issue 11)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import PARITY_DIR, write_class_folders
from PIL import Image
from test_export import build_attack

from neuronattack import outdir
from neuronattack.artifacts import file_hash, write_json
from neuronattack.campaign.config import parse_campaign
from neuronattack.campaign.export import _cell, export_run
from neuronattack.cli import main
from neuronattack.errors import NeuronAttackError
from neuronattack.imagesets import _open_rgb, scan_images
from neuronattack.models import load_clip
from neuronattack.neurons import analysis
from neuronattack.neurons.analysis import AnalysisSettings, analyze
from neuronattack.neurons.atlas import Atlas, build_atlas
from neuronattack.neurons.text_dictionary import build_dictionary
from neuronattack.neurons.vocabulary import load_vocabulary
from neuronattack.progress import LogProgress, stderr_console, stdout_console

PARITY = f"local-dir:{PARITY_DIR}"
WORDS = ["cat", "dog", "ship", "car", "tree", "house", "water", "grass", "sky", "road", "bird",
         "fish", "horse", "apple", "chair", "table", "red", "blue", "green", "night", "snow",
         "sand", "metal", "glass", "paper", "wood", "stone", "cloud", "fire", "light"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    write_class_folders(root / "images", ("cat", "dog"), 6)
    (root / "words.txt").write_text("\n".join(WORDS) + "\n")
    return root


def analyze_cli(inputs: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, [
        "analyze", "--clip", PARITY, "--images", str(inputs / "images"), "--out", str(out),
        "--top-k", "4", "--words", str(inputs / "words.txt"), "--nonzeros", "8", "--device",
        "cpu", "--json", *extra])


@pytest.fixture
def atlas_dir(inputs, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "atlas"
    result = analyze_cli(inputs, out, "--layers", "1", "2")
    assert result.exit_code == 0, result.output
    return out


def test_overwrite_rebuilds_the_atlas_for_the_new_directions(inputs, atlas_dir, tmp_path):
    """Today's bug: the old atlas.json/atlas.safetensors survived --overwrite and served the new
    directions with the old words (or crashed with KeyError for other --layers)."""
    redone = analyze_cli(inputs, atlas_dir, "--layers", "0", "2", "--limit", "7", "--overwrite")
    assert redone.exit_code == 0, redone.output
    atlas = Atlas.load(atlas_dir)
    assert atlas.layers == [0, 2]
    assert atlas.atlas_meta["directions"] == file_hash(atlas_dir / "directions.safetensors")
    # The words equal a fresh build over the same directions.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for name in ("meta.json", "directions.safetensors", "images.json"):
        shutil.copy(atlas_dir / name, fresh / name)
    clip = load_clip(PARITY)
    dictionary = build_dictionary(clip, load_vocabulary(str(inputs / "words.txt")))
    expected = build_atlas(fresh, dictionary, nonzeros=8)
    for layer in (0, 2):
        assert torch.equal(atlas.codes[layer].word_indices, expected.codes[layer].word_indices)
    # Same layers, other images: the atlas is rebuilt too, not judged current by its words.
    before = atlas.codes[2].word_indices.clone()
    again = analyze_cli(inputs, atlas_dir, "--layers", "0", "2", "--limit", "9", "--overwrite")
    assert again.exit_code == 0, again.output
    after = Atlas.load(atlas_dir)
    assert after.atlas_meta["directions"] == file_hash(atlas_dir / "directions.safetensors")
    assert after.images_used == 9 and not torch.equal(before, after.codes[2].word_indices)


def test_an_atlas_over_replaced_directions_is_refused(inputs, atlas_dir, tmp_path):
    other = tmp_path / "other"
    assert analyze_cli(inputs, other, "--layers", "1", "2", "--limit", "5").exit_code == 0
    shutil.copy(other / "directions.safetensors", atlas_dir / "directions.safetensors")
    with pytest.raises(NeuronAttackError, match="decomposes other directions"):
        Atlas.load(atlas_dir)


@pytest.mark.parametrize(("name", "damage", "command"), [
    ("atlas.safetensors", "truncate", ["neurons", "top", "--layer", "1"]),
    ("directions.safetensors", "truncate", ["neurons", "top", "--layer", "1"]),
    ("atlas.json", "shape", ["neurons", "top", "--layer", "1"]),
    ("atlas.json", "garble", ["neurons", "search", "cat"]),
    ("meta.json", "garble", ["neurons", "show", "1.3"]),
])
def test_damaged_artifacts_are_named_with_a_remedy(atlas_dir, name, damage, command):
    path = atlas_dir / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "shape":
        path.write_text(json.dumps({"words": 3}))
    else:
        path.write_text(path.read_text()[:40])
    result = CliRunner().invoke(main, [*command, "--atlas", str(atlas_dir)])
    assert result.exit_code == 2, result.output
    assert f"{path} is damaged (" in result.output and "; rerun" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_damaged_checkpoint_and_meta_say_how_to_start_again(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    clip = load_clip(PARITY)
    images = scan_images(inputs / "images")
    out = tmp_path / "run"
    settings = AnalysisSettings(layers=(1,), top_k=3)
    real = analysis.effect_coords
    calls = {"n": 0}

    def dies(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(analysis, "effect_coords", dies)
    with pytest.raises(KeyboardInterrupt):
        analyze(clip, images, out, settings, batch_size=4, show_progress=False)
    monkeypatch.setattr(analysis, "effect_coords", real)
    checkpoint = out / analysis.CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(NeuronAttackError, match=r"checkpoint.safetensors is damaged .*--overwrite"):
        analyze(clip, images, out, settings, batch_size=4, show_progress=False)
    (out / "meta.json").write_text("{")
    with pytest.raises(NeuronAttackError, match=r"meta.json is damaged .*--overwrite"):
        analyze(clip, images, out, settings, batch_size=4, show_progress=False)
    done = analyze(clip, images, out, settings, batch_size=4, show_progress=False, overwrite=True)
    assert done.meta["status"] == "complete"


def test_a_kill_early_in_a_pass_loses_one_batch_not_the_pass(inputs, tmp_path, monkeypatch):
    """What is on disk when the process dies (SIGKILL: no handler runs) after three batches."""
    clip = load_clip(PARITY)
    images = scan_images(inputs / "images")
    out = tmp_path / "run"
    real = analysis.effect_coords
    seen = []

    def look(*args):
        checkpoint = out / analysis.CHECKPOINT
        if checkpoint.exists():
            from neuronattack.artifacts import load_tensors

            _, metadata = load_tensors(checkpoint, with_metadata=True)
            seen.append(json.loads(metadata["progress"])["next_index"])
        else:
            seen.append(None)
        return real(*args)

    monkeypatch.setattr(analysis, "effect_coords", look)
    analyze(clip, images, out, AnalysisSettings(layers=(1,), top_k=3), batch_size=2,
            checkpoint_seconds=3600, show_progress=False)
    # Before batch 3 of the first pass the checkpoint holds batch 1 (2 images), not nothing.
    assert seen[0] is None and seen[2] == 2


def test_other_inputs_in_an_analysis_folder_are_named(inputs, atlas_dir):
    result = analyze_cli(inputs, atlas_dir, "--layers", "1", "2", "--top-k", "5")
    assert result.exit_code == 2
    assert "the settings (top_k 4 → 5)" in result.output
    result = analyze_cli(inputs, atlas_dir, "--layers", "1", "2", "--limit", "5")
    assert "the image set (12 → 5 images)" in result.output


def test_top_k_above_the_image_count_warns(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, [
        "analyze", "--clip", PARITY, "--images", str(inputs / "images"), "--out",
        str(tmp_path / "a"), "--top-k", "50", "--words", "none", "--layers", "1"])
    assert result.exit_code == 0, result.output
    assert "warning: --top-k 50 is more than the 12 images" in result.output


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_artifacts_get_the_mode_of_any_new_file(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_json(tmp_path / "meta.json", {"a": 1})
        run = build_attack(tmp_path / "attack")
        export_run(run, tmp_path / "export")
    finally:
        os.umask(old)
    assert (tmp_path / "meta.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "export" / "classes.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "export").stat().st_mode & 0o777 == 0o777 & ~mask


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    levels = np.linspace(0, 65535, 48 * 48).reshape(48, 48).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    pixels = np.asarray(_open_rgb(tmp_path / "deep.png"))
    assert pixels.shape == (48, 48, 3)
    expected = np.rint(levels / 257.0)
    assert np.abs(pixels[..., 0] - expected).max() <= 1
    assert (pixels == 255).mean() < 0.01  # PIL's convert("RGB") made 99.6% white


HOLD = """
import sys, time
from neuronattack import outdir
with outdir.locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def hold_lock(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_on_a_folder_is_refused_and_a_killed_ones_lock_taken_over(inputs, tmp_path):
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        result = CliRunner().invoke(main, [
            "analyze", "--clip", PARITY, "--images", str(inputs / "images"), "--out", str(out),
            "--words", "none"])
        assert result.exit_code == 2
        assert "is being written by another neuronattack run (pid" in result.output
        with pytest.raises(NeuronAttackError, match="another neuronattack run"), \
                outdir.locked(out):
            pass
        config = tmp_path / "c.toml"
        config.write_text('[model]\nclip = "toy"\n[judges]\nclasses = "toy"\nchecker = "toy"\n'
                          '[generator]\nspec = "toy"\n[pairs]\nset = "toy-all"\n')
        result = CliRunner().invoke(main, ["campaign", str(config), "--out", str(out),
                                           "--device", "cpu"])
        assert result.exit_code == 2, result.output
        assert "is being written by another neuronattack run" in result.output
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / outdir.LOCK).exists()  # the killed run could not clean up
    with outdir.locked(out):
        assert str(os.getpid()) in (out / outdir.LOCK).read_text()
    assert not (out / outdir.LOCK).exists()


def test_export_replaces_only_its_own_exports(tmp_path):
    run = build_attack(tmp_path / "attack")
    mine = tmp_path / "mine"
    export_run(run, mine)
    assert json.loads((mine / "meta.json").read_text())["schema"] == "neuronattack.export/1"
    (mine / "stale.txt").write_text("old")
    export_run(run, mine, overwrite=True)
    assert not (mine / "stale.txt").exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with pytest.raises(NeuronAttackError, match="will not delete it"):
        export_run(run, theirs, overwrite=True)
    assert (theirs / "thesis.tex").read_text() == "years of work"


def test_dataset_card_escapes_markdown():
    assert _cell("[cat](http://x) *b* <img> | a_b _c_") == (
        r"\[cat\]\(http://x\) \*b\* \<img\> \| a_b \_c\_")


def test_campaign_check_reports_class_typos_with_other_problems_of_the_table():
    text = ('[model]\nclip = "toy"\n[judges]\nclasses = "cifar10"\n[pairs]\n'
            'list = [["cat", "dogg"]]\nsett = "x"\n[generator]\nspec = "sd-trubo"\n')
    with pytest.raises(NeuronAttackError) as caught:
        parse_campaign(text, "c.toml")
    message = str(caught.value)
    assert "Unknown class 'dogg'; did you mean dog?" in message
    assert "unknown key [pairs] sett" in message
    assert "Unknown generator 'sd-trubo'; did you mean sd-turbo" in message


def test_campaign_check_json_is_only_json_and_lists_the_models(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[model]\nclip = "ViT-B-32:openai"\n[judges]\nclasses = "cifar10"\n'
                      f'[run]\nout = "{tmp_path}/run"\n[pairs]\nlist = [["cat", "dog"]]\n')
    result = CliRunner().invoke(main, ["campaign", str(config), "--check", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["models"]["checker"] == "ViT-L-14:openai" and plan["units"] == 1
    text = CliRunner().invoke(main, ["campaign", str(config), "--check"])
    assert "checker ViT-L-14:openai" in text.output


def test_campaign_into_a_foreign_folder_needs_the_flag(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone else's work\n")
    config = tmp_path / "c.toml"
    config.write_text('[model]\nclip = "ViT-B-32:openai"\n[judges]\nclasses = "cifar10"\n'
                      f'[run]\nout = "{foreign}"\n[pairs]\nlist = [["cat", "dog"]]\n')
    refused = CliRunner().invoke(main, ["campaign", str(config), "--check"])
    assert refused.exit_code == 2 and "--allow-foreign-out" in refused.output
    assert refused.output.count("\n") == 1
    accepted = CliRunner().invoke(main, ["campaign", str(config), "--check", "--json",
                                         "--allow-foreign-out"])
    assert accepted.exit_code == 0, accepted.output
    assert json.loads(accepted.stdout)["out"] == str(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_attack_into_a_foreign_folder_needs_the_flag(atlas_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's work\n")
    argv = ["attack", "cat", "dog", "--clip", PARITY, "--atlas", str(atlas_dir), "--generator",
            "tiny", "--classes", "cifar10", "--checker", "none", "--arms", "method", "--n", "1",
            "--words", "3", "--device", "cpu", "--no-why-maps", "--json", "--out", str(out)]
    refused = CliRunner().invoke(main, argv)
    assert refused.exit_code == 2 and "--allow-foreign-out" in refused.output
    assert refused.output.count("\n") == 1
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    accepted = CliRunner().invoke(main, [*argv, "--allow-foreign-out"])
    assert accepted.exit_code == 0, accepted.output
    assert (out / "notes.txt").read_text() == "someone else's work\n"
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    # From now on the folder holds our attack: a rerun resumes without the flag.
    again = CliRunner().invoke(main, argv)
    assert again.exit_code == 0, again.output


def test_one_accelerate_process_says_so(monkeypatch, capsys):
    from neuronattack.campaign.runner import process_state

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    process_state("cpu")
    assert "accelerate started 1 process" in capsys.readouterr().err


def test_verify_names_loose_files_beside_class_folders(atlas_dir, tmp_path):
    images = write_class_folders(tmp_path / "labelled", ("cat", "dog"), 2)
    shutil.copy(images / "cat" / "0.png", images / "stray.png")
    result = CliRunner().invoke(main, ["verify", "--atlas", str(atlas_dir), "--images",
                                       str(images)])
    assert result.exit_code == 2
    assert "has class folders but also 1 image(s) outside them (e.g. stray.png)" in result.output


def test_report_has_json(tmp_path):
    run = build_attack(tmp_path / "attack")
    result = CliRunner().invoke(main, ["report", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["out"] == str(run / "report.html") and "method" in report["arms"]


def test_messages_keep_emoji_codes_and_brackets(tmp_path):
    strange = tmp_path / "runs [old] :x: [bold]b[/bold]"
    result = CliRunner().invoke(main, ["analyze", "--clip", PARITY, "--images", str(strange),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert str(strange) in result.output.replace("\n", "")


def test_tables_in_logs_are_not_cut_at_80_columns(capsys):
    from rich.table import Table

    table = Table("neuron", "words")
    table.add_row("9.1234", " ".join(["wordy"] * 30))
    stdout_console().print(table)
    lines = capsys.readouterr().out.splitlines()
    assert any(len(line) > 150 for line in lines) and len(lines) == 5


def test_progress_in_a_log_file_is_plain_periodic_lines(capsys):
    bar = LogProgress(stderr_console(), interval=0.0)
    with bar:
        task = bar.add_task("pass 1/2 (mean)", total=100)
        time.sleep(0.01)
        bar.advance(task, 40)
        bar.update(task, completed=100)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # no start line: a task that ends at once logs one line, not two
    assert lines[0].startswith("pass 1/2 (mean): 40/100 (40%), ~") and lines[0].endswith("left")
    assert lines[1] == "pass 1/2 (mean): 100/100 (100%)"


def test_a_long_word_encoding_is_announced(monkeypatch, tmp_path, capsys):
    from neuronattack.neurons import atlas as atlas_module

    monkeypatch.setattr(atlas_module, "ESTIMATE_ABOVE_SECONDS", 0.0)
    clip = load_clip(PARITY)
    atlas_module.announce_encoding(clip, load_vocabulary("common:6000"), tmp_path)
    line = capsys.readouterr().err.strip()
    assert line.startswith("warning: encoding 6,000 words on CPU: ~")
    assert "--words common:5000 is faster" in line


def test_random_bytes_are_not_called_pickled_objects(tmp_path):
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    from neuronattack.models.clip import read_tensors  # what load_clip reads checkpoints with

    with pytest.raises(NeuronAttackError, match="not a PyTorch checkpoint") as caught:
        read_tensors(tmp_path / "noise.pt")
    assert "pickles" not in str(caught.value)


def test_offline_hub_message_does_not_contradict_itself(offline_hub):
    with pytest.raises(NeuronAttackError) as caught:
        load_clip("ViT-B-32:openai")
    message = str(caught.value)
    assert "HF_HUB_OFFLINE is set and the cache does not hold them" in message
    assert "unset" not in message


def test_long_hub_reasons_are_cut_at_a_word():
    from neuronattack.models.hub import first_line

    reason = first_line(RuntimeError("word " * 100))
    assert reason.endswith("word …") and len(reason) <= 202


def test_word_decomposition_shows_progress_in_a_log(capsys):
    from neuronattack.neurons.atlas import sparse_codes

    generator = torch.Generator().manual_seed(0)
    atoms = torch.randn(40, 16, generator=generator)
    sparse_codes(atoms, torch.randn(600, 16, generator=generator), nonzeros=4,
                 show_progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == "words per neuron (OMP): 600/600 (100%)"


def test_logged_warnings_print_as_warning_lines_during_a_command():
    """Not ``WARNING:neuronattack.models.generators:...`` (the root logger's format)."""
    import logging

    from neuronattack.progress import warnings_to_console

    console = stderr_console()
    console.begin_capture()
    with warnings_to_console():
        logging.getLogger("neuronattack.models.generators").warning("TINY GENERATOR: noise")
    assert console.end_capture().splitlines() == ["warning: TINY GENERATOR: noise"]


def test_report_keeps_long_model_names_inside_the_page(tmp_path):
    from neuronattack.campaign.report import write_report

    html = write_report(build_attack(tmp_path / "attack")).read_text()
    assert "td:first-child{white-space:normal;overflow-wrap:anywhere" in html
    assert "figure td{white-space:normal;overflow-wrap:anywhere}" in html


def test_a_folder_a_kill_left_before_its_first_meta_is_still_free(tmp_path):
    """Killed after creating images/ (or mid-write of meta.json): the rerun must resume."""
    folder = tmp_path / "unit"
    (folder / "images").mkdir(parents=True)
    (folder / ".meta.json.k2j3.tmp").write_text('{"sche')
    outdir.claim(folder, "neuronattack.attack/1")
    (folder / "images" / "x.png").write_bytes(b"png")
    with pytest.raises(NeuronAttackError, match="holds no neuronattack attack"):
        outdir.claim(folder, "neuronattack.attack/1")


def test_progress_descriptions_are_printed_as_written():
    """A class named "[old]" or a path with ":x:" in a bar's description, not markup."""
    from io import StringIO

    from rich.console import Console
    from rich.progress import Progress, TextColumn

    from neuronattack.progress import progress_bar

    column = TextColumn("{task.description}")
    progress_bar(column, disable=True)
    console = Console(width=200, record=True, file=StringIO())
    with Progress(column, console=console) as bar:
        bar.add_task("[old] :x: → [bold]cat[/bold]", total=1)
    assert "[old] :x: → [bold]cat[/bold]" in console.export_text()
