"""Run a campaign: every (pair, seed) unit of a config, sharded over processes, merged at the end.

Run folder (what export and report read):

- ``meta.json``: the campaign: config text, resolved settings, the planned units in order, the
  models as loaded, package versions;
- ``campaign.toml``: the config as written;
- ``units/{source}-{target}/s{seed}/``: one :func:`run_attack` output folder per unit (images/,
  results.jsonl, selection-*.json, meta.json, summary.html);
- ``results.jsonl``: the merge: every unit's records sorted by id, image paths relative to the
  run folder (``units/cat-dog/s0/images/...png``);
- ``summary.json``: :func:`summarize` over all pairs and per pair, and which units are incomplete.

Nothing lost, nothing twice: each unit has its own folder and is run by exactly one process; a
record is one fsynced line and every other file is replaced atomically, so a kill at any moment
leaves finished work intact, and rerunning the same command resumes every unit where it stopped.
The merge is a pure function of the unit folders, so merging twice gives the same bytes.

Rendering: consecutive units form render groups (:func:`render_groups`), and a group's images are
rendered as one queue in batches of the generator's batch size across arms and units, so small
arms still fill the GPU. Sharding: under ``accelerate launch``, group k runs in process k % n; each
process loads the models once for all its units. The main process goes first through setup
(checking the run folder, building a missing atlas, filling the text caches), and merges once
every process is done.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path

from neuronattack import outdir, pipeline, validation
from neuronattack.artifacts import read_json, versions, write_json, write_text
from neuronattack.attack.records import RESULTS, AttackRecord, read_records
from neuronattack.attack.run import SCHEMA as ATTACK_SCHEMA
from neuronattack.attack.run import (
    AttackContext,
    run_attacks,
    summarize,
)
from neuronattack.campaign.config import Campaign
from neuronattack.errors import NeuronAttackError
from neuronattack.progress import stderr_console, warn

SCHEMA = "neuronattack.campaign/1"
SUMMARY_SCHEMA = "neuronattack.campaign-summary/1"
META = "meta.json"
CONFIG_COPY = "campaign.toml"
SUMMARY = "summary.json"
# Processes wait for the main one to build an atlas, and for the slowest shard at the end; both
# can take hours, far beyond torch.distributed's default 30-minute barrier timeout.
BARRIER_TIMEOUT = timedelta(days=7)

console = stderr_console()


@dataclass(frozen=True)
class Unit:
    """One pair at one run seed: the unit of work a process takes and resumes."""

    source: str
    target: str
    seed: int

    @property
    def pair(self) -> str:
        """The pair as record ids spell it."""
        return pipeline.pair_name(self.source, self.target)

    @property
    def folder(self) -> str:
        """Relative to the run folder, in POSIX form: record paths are built from it."""
        return f"units/{self.pair}/s{self.seed}"


def plan_units(campaign: Campaign) -> list[Unit]:
    """Every unit, pairs in config order and each pair's seeds together: the same on every
    process, which is what makes the round-robin split agree across them."""
    return [Unit(source, target, seed) for source, target in campaign.pairs
            for seed in campaign.seeds]


def describe_plan(campaign: Campaign) -> dict:
    """What ``campaign --check`` reports: the units, the images, and every model the run loads
    (each is downloaded on first use unless it is cached), ``auto`` checkers resolved."""
    from neuronattack.attack.setup import default_checker

    units = plan_units(campaign)
    checker = default_checker(campaign.clip) if campaign.checker == "auto" else campaign.checker
    models = {"clip": campaign.clip, "generator": campaign.generator.spec,
              "judges": list(campaign.judges),
              "checker": checker.removeprefix("clip:") if checker.startswith("clip:") else None,
              "writer": campaign.writer.removeprefix("hf:") if campaign.writer.startswith("hf:")
              else None}
    return {"out": str(campaign.out), "pairs": len(campaign.pairs), "seeds": len(campaign.seeds),
            "units": len(units),
            "images": len(units) * campaign.attack.n * len(campaign.attack.arms),
            "checker": checker, "models": models}


def render_groups(units: Sequence[Unit], images_per_unit: int, batch: int) -> list[list[Unit]]:
    """Consecutive units rendered as one queue: the fewest whose images fill whole batches
    (``batch / gcd(images_per_unit, batch)`` units), so a GPU gets full batches however small the
    arms are, and only the campaign's last group can end on a part batch.

    Groups depend on the plan alone, never on the number of processes: a batch holds the same
    images however a run is sharded or resumed, which keeps results identical to the bit.
    """
    size = batch // math.gcd(images_per_unit, batch)
    return [list(units[start:start + size]) for start in range(0, len(units), size)]


def shard(items: Sequence, index: int, count: int) -> list:
    """Item k (a render group of units) goes to process k % count: neighbours (often the same
    pair) run side by side."""
    return list(items[index::count])


# ---------------------------------------------------------------------------------------------
# Processes and devices


def process_state(device: str):
    """This process' place among those ``accelerate launch`` started (one of one without it).

    On a machine without CUDA the processes must be told they are CPU processes, or each would
    believe it runs alone and they would all do every unit.
    """
    import torch
    from accelerate import PartialState

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    state = PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if state.num_processes != launched:
        raise NeuronAttackError(
            f"{launched} processes were launched but only {state.num_processes} joined; set "
            "[run] device to cpu for CPU processes, or to auto for one GPU per process."
        )
    if state.num_processes == 1 and under_accelerate():
        warn("accelerate started 1 process, so this one runs every unit; without GPUs, "
             "`accelerate launch --num_processes N` starts one process unless you add "
             "--multi_cpu (or choose several CPU processes in `accelerate config`).")
    return state


def under_accelerate() -> bool:
    """True when ``accelerate launch`` started this process (it sets ACCELERATE_* variables)."""
    return any(name.startswith("ACCELERATE_") for name in os.environ)


def process_device(requested: str, state) -> str:
    """``auto`` is this process' own GPU under accelerate (the CPU without one); anything else is
    taken as given, after checking it exists."""
    from neuronattack.neurons.analysis import pick_device

    if requested != "auto":
        return str(pick_device(requested))
    return "cpu" if state.device.type == "cpu" else str(state.device)


# ---------------------------------------------------------------------------------------------
# Models


def load_atlas(campaign: Campaign, clip, device: str, show_progress: bool):
    """The campaign's atlas, analysed first when missing and ``[model] images`` says from what."""
    return pipeline.obtain_atlas(clip, campaign.atlas, campaign.images, device, show_progress,
                                 options=('add [model] images = "DIR"', '[model] atlas = "DIR"'))


def load_context(campaign: Campaign, clip, atlas, device: str,
                 show_progress: bool) -> AttackContext:
    """The models every unit of this process shares, loaded once."""
    choice = campaign.generator
    # One pipeline call per attack batch: the batch is also the unit a resume redoes.
    return pipeline.attack_context(
        clip, atlas, campaign.class_names, generator=choice.spec,
        generator_options={"steps": choice.steps, "guidance": choice.guidance,
                           "size": choice.size, "batch_size": choice.batch_size},
        writer=campaign.writer, judges=campaign.judges, checker=campaign.checker, device=device,
        render_batch=None, show_progress=show_progress)


def describe_models(context: AttackContext) -> dict:
    """What the run used, as loaded; the device is left out, as it differs between processes."""
    generator = {"name": context.generator.name, **context.generator.settings}
    generator.pop("device", None)
    return json.loads(json.dumps({
        "clip": context.clip.spec,
        "atlas": {"path": str(context.atlas.root), "hash": context.atlas_hash},
        "generator": generator, "writer": context.writer.name,
        "judges": [judge.name for judge in context.judges], "checker": context.checker.name,
    }, default=str))


# ---------------------------------------------------------------------------------------------
# The run folder


def check_out(out: Path, allow_foreign: bool = False) -> None:
    """A campaign's run folder (resumed), an empty or a new one, or with ``allow_foreign`` any
    folder that holds no other neuronattack output; refused before models load."""
    validation.writable_folder(out, "[run] out")
    outdir.claim(out, SCHEMA, allow_nonempty=allow_foreign, flag=outdir.ALLOW_FOREIGN,
                 option="[run] out")


def check_run(campaign: Campaign) -> None:
    """Refuse to resume a run folder that another campaign started, naming what differs."""
    path = campaign.out / META
    if not path.exists():
        return
    changed = differences(read_json(path).get("settings", {}), campaign.resolved())
    if changed:
        raise NeuronAttackError(
            f"{campaign.out} holds a campaign with other settings ({', '.join(changed)}); rerun "
            f"it with its own config ({campaign.out / CONFIG_COPY}) or choose another [run] out."
        )


def differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ, e.g. ``attack.n``."""
    names = []
    for key in sorted(stored.keys() | wanted.keys()):
        before, after = stored.get(key), wanted.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            names += differences(before, after, f"{prefix}{key}.")
        elif before != after:
            names.append(f"{prefix}{key}")
    return names


def start_run(campaign: Campaign, context: AttackContext, units: Sequence[Unit]) -> None:
    """Write the campaign's meta.json and config copy once; a resumed run keeps the originals.

    meta.json first: it is what makes the folder this campaign's (``outdir``), so a kill between
    the two writes leaves a folder the rerun recognises, and the rerun restores the copy from it.
    """
    path = campaign.out / META
    if not path.exists():
        write_json(path, {
            "schema": SCHEMA, "config": campaign.text, "settings": campaign.resolved(),
            "units": [asdict(unit) for unit in units], "models": describe_models(context),
            "versions": versions(),
        })
    if not (campaign.out / CONFIG_COPY).exists():
        write_text(campaign.out / CONFIG_COPY, read_json(path, expect=dict)["config"])


def remove_temporaries(folder: Path) -> None:
    """Temporary files a kill left before their rename: never read, but they are half-written.
    Only the process that owns the unit runs this, so none of them is still being written."""
    for path in [*folder.glob(".*.tmp"), *folder.glob("images/.*.tmp")]:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Running


def run_units(context: AttackContext, campaign: Campaign, groups: Sequence[Sequence[Unit]],
              show_bars: bool = True, label: str = "") -> None:
    """Run (or resume) each render group of units as one queue, each unit into its own folder; a
    finished unit only redoes its selection files and summary.html.

    With a ``label``, each finished unit gets one line starting with it: under accelerate that
    replaces the progress bars, which several processes would draw over each other.
    """
    for units in groups:
        for unit in units:
            remove_temporaries(campaign.out / unit.folder)
        attacks = [(campaign.settings(unit.source, unit.target, unit.seed),
                    campaign.out / unit.folder) for unit in units]
        results = run_attacks(context, attacks, show_progress=show_bars)
        for unit, records in zip(units, results, strict=True) if label else ():
            console.print(f"{label}{unit.source} → {unit.target}, seed {unit.seed}: "
                          f"{len(records)} images in {unit.folder}", highlight=False)


def run_campaign(campaign: Campaign, show_progress: bool = True,
                 allow_foreign_out: bool = False) -> dict | None:
    """Run this process' share of the campaign, wait for the others, merge on the main process.

    Returns the merged summary (``summary.json``) on the main process and None on the others.
    Rerunning resumes; a different config on the same folder raises before anything loads.
    """
    # Every process looks before the main one locks: a run already going is then refused by all
    # of them, and none is left waiting for a main process that gave up. The barrier makes sure
    # no process of this launch looks after its own main process has locked.
    outdir.check_unlocked(campaign.out)
    state = process_state(campaign.device)
    state.wait_for_everyone()
    with ExitStack() as stack:
        # One campaign per folder: the main process holds the lock for the whole run (its
        # helpers write into the same folder by design).
        if state.is_main_process:
            check_out(campaign.out, allow_foreign_out)
            stack.enter_context(outdir.locked(campaign.out))
            check_run(campaign)
        return _run_campaign(campaign, state, show_progress)


def _run_campaign(campaign: Campaign, state, show_progress: bool) -> dict | None:
    from neuronattack.models import load_clip

    device = process_device(campaign.device, state)
    units = plan_units(campaign)
    alone = state.num_processes == 1
    talk = show_progress and state.is_main_process
    clip = load_clip(campaign.clip, device=device)
    with state.main_process_first():  # the others wait while the main process builds an atlas
        atlas = load_atlas(campaign, clip, device, talk)
    # Processes fill the text caches side by side: cache files are replaced atomically.
    context = load_context(campaign, clip, atlas, device, talk)
    if state.is_main_process:
        start_run(campaign, context, units)
    groups = render_groups(units, campaign.attack.n * len(campaign.attack.arms),
                           context.render_batch)
    mine = shard(groups, state.process_index, state.num_processes)
    if show_progress:
        console.print(f"process {state.process_index + 1} of {state.num_processes}: "
                      f"{sum(map(len, mine))} of {len(units)} units on {device}",
                      highlight=False)
    label = "" if not show_progress else f"[{state.process_index + 1}/{state.num_processes}] "
    run_units(context, campaign, mine, show_bars=show_progress and alone, label=label)
    state.wait_for_everyone()
    return merge_run(campaign.out) if state.is_main_process else None


# ---------------------------------------------------------------------------------------------
# Merging


def merge_run(run_dir: Path) -> dict:
    """Gather every unit's records into ``results.jsonl`` and ``summary.json``; idempotent.

    Safe on a run still in progress or cut short: it merges what is there and lists the units
    that are not complete yet.
    """
    run_dir = Path(run_dir)
    if not (run_dir / META).exists():
        raise NeuronAttackError(f"{run_dir} is no campaign run (no {META}); give the [run] out "
                                "folder of a campaign.")
    if outdir.schema_of(run_dir) == ATTACK_SCHEMA:
        raise NeuronAttackError(
            f"{run_dir} is a single attack, not a campaign: its {RESULTS} is already whole, so "
            "there is nothing to merge; export or report it directly."
        )
    meta = read_json(run_dir / META, expect=dict)
    if meta.get("schema") != SCHEMA or not isinstance(meta.get("units"), list):
        raise NeuronAttackError(f"{run_dir / META} is not a campaign's; give the [run] out "
                                "folder of a campaign.")
    units = [Unit(**unit) for unit in meta["units"]]
    attack = meta["settings"]["attack"]
    per_unit = attack["n"] * len(attack["arms"])
    records, incomplete = [], []
    for unit in units:
        rows = read_records(run_dir / unit.folder / RESULTS)
        if len(rows) < per_unit:
            incomplete.append(unit.folder)
        records += [in_run(row, unit.folder) for row in rows]
    records.sort(key=lambda record: record.id)
    check_unique(records)
    write_text(run_dir / RESULTS, "".join(record.line() for record in records))
    summary = summarize_run(records, units, incomplete)
    write_json(run_dir / SUMMARY, summary)
    return summary


def in_run(record: AttackRecord, folder: str) -> AttackRecord:
    """The record with its image path relative to the run folder instead of the unit's."""
    return record if record.image is None else replace(record, image=f"{folder}/{record.image}")


def check_unique(records: Sequence[AttackRecord]) -> None:
    """Two records with one id mean two processes ran the same unit at once."""
    for before, after in zip(records, records[1:], strict=False):
        if before.id == after.id:
            unit = Unit(after.source, after.target, after.run_seed)
            raise NeuronAttackError(
                f"Record {after.id} is there twice: two campaigns ran on this folder at the "
                f"same time. Delete {unit.folder} and rerun the campaign to redo that unit."
            )


def summarize_run(records: Sequence[AttackRecord], units: Sequence[Unit],
                  incomplete: Sequence[str]) -> dict:
    """Success rates per arm over all pairs, and per pair (its seeds pooled)."""
    by_pair: dict[str, list[AttackRecord]] = {unit.pair: [] for unit in units}
    for record in records:
        by_pair[record.pair].append(record)
    names = {unit.pair: (unit.source, unit.target) for unit in units}
    return {
        "schema": SUMMARY_SCHEMA,
        "units": len(units), "complete": len(units) - len(incomplete),
        "incomplete": list(incomplete), "records": len(records),
        "arms": summarize(records),
        "pairs": {pair: {"source": names[pair][0], "target": names[pair][1],
                         "arms": summarize(rows)} for pair, rows in by_pair.items()},
    }
