"""``neuronattack analyze``: rank-one directions of every neuron of some blocks over an image set.

Artifacts in the output folder:
- ``meta.json``: schema, model spec, image-set fingerprint, settings, versions, status, summary.
- ``directions.safetensors``: per block ``{layer}.direction`` etc. (see ``RankOneDirections``).
- ``checkpoint.safetensors`` while running: the streaming state, so an interrupted run resumes
  where it stopped; removed once the directions are written.
- ``shards/I-of-N/checkpoint.safetensors`` instead, while a run split into N shards (``--shard``,
  ``accelerate launch``) is running: one per process; shard 0 merges them into the one
  ``directions.safetensors`` and removes the folder (``neurons.sharding`` says why the merge is
  identical to one process, bit for bit).
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from safetensors import SafetensorError, safe_open

from neuronattack import outdir, validation
from neuronattack.artifacts import (
    damaged,
    load_tensors,
    read_json,
    require_fields,
    require_tensors,
    save_tensors,
    versions,
    write_json,
)
from neuronattack.errors import NeuronAttackError
from neuronattack.imagesets import ImageSet, iter_batches
from neuronattack.lens.neuron_effects import effect_basis, effect_coords
from neuronattack.lens.traced_pass import trace
from neuronattack.lens.vit import check_convention
from neuronattack.models.clip import weights_fingerprint
from neuronattack.models.hub import resolve_device
from neuronattack.neurons.directions import RankOneDirections, RankOneFitter
from neuronattack.neurons.settings import DEFAULT_BATCH_SIZE, PRECISION_NAMES, AnalysisSettings
from neuronattack.neurons.sharding import UNSHARDED, Shard, TreeSum
from neuronattack.progress import progress_bar, warn

SCHEMA = "neuronattack.directions/1"
META, DIRECTIONS, CHECKPOINT = "meta.json", "directions.safetensors", "checkpoint.safetensors"
IMAGES = "images.json"
SHARDS = "shards"
# How often a shard looks for the others' files while it waits for them to finish a pass.
POLL_SECONDS = 0.5
PRECISIONS = dict(zip(PRECISION_NAMES, (torch.float32, torch.bfloat16, torch.float16),
                      strict=True))
PASSES = ("mean", "top-k")
# Checkpoints after these batches of each pass too, not only every checkpoint_seconds: a run
# killed in its first minute then loses seconds of work, not the whole pass.
EARLY_CHECKPOINTS = (1, 4, 16)
# The files `neuronattack.neurons.atlas` builds from these directions (named here, below it).
ATLAS_FILES = ("atlas.safetensors", "atlas.json")
OVERWRITE = "rerun `neuronattack analyze` with --overwrite to start this analysis again"


@dataclass(frozen=True)
class Analysis:
    out_dir: Path
    meta: dict
    directions: dict[int, RankOneDirections]


def default_layers(n_blocks: int) -> tuple[int, ...]:
    """The three blocks before the last (8, 9, 10 for a 12-block ViT-B-32, the paper's choice)."""
    return tuple(range(max(0, n_blocks - 4), n_blocks - 1))


def check_layers(layers: tuple[int, ...], n_blocks: int) -> tuple[int, ...]:
    layers = tuple(sorted(set(layers)))
    if not layers:
        raise NeuronAttackError("Name at least one block to analyse with --layers.")
    bad = [layer for layer in layers if not 0 <= layer < n_blocks - 1]
    if bad:
        raise NeuronAttackError(
            f"Block(s) {', '.join(map(str, bad))} cannot be analysed: this tower has blocks "
            f"0..{n_blocks - 1} and a neuron needs a later block to have a second-order effect; "
            f"choose from 0..{n_blocks - 2}."
        )
    return layers


def pick_device(device: str) -> torch.device:
    validation.require("--device", device, validation.device)
    device = resolve_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise NeuronAttackError(f"--device {device} asked for CUDA, but torch sees no GPU here.")
    return torch.device(device)


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise NeuronAttackError(f"--precision must be one of {', '.join(PRECISIONS)}.")
    if device.type == "cpu" and precision == "fp16":
        raise NeuronAttackError("fp16 is for GPUs; on the CPU use --precision bf16 or fp32.")
    return PRECISIONS[precision]


def _identity(clip, image_set: ImageSet, settings: AnalysisSettings) -> dict:
    return {
        "schema": SCHEMA,
        "model": clip.spec,
        "vision_fingerprint": weights_fingerprint(clip.model.visual),
        "image_set": {"fingerprint": image_set.fingerprint(), "images": len(image_set)},
        "settings": asdict(settings),
    }


def _differences(meta: dict, identity: dict) -> list[str]:
    """What differs between a stored analysis and the one asked for, in the user's words."""
    as_stored = json.loads(json.dumps(identity))  # tuples become lists, as in meta.json
    what = {"schema": "the file format", "model": "the model",
            "vision_fingerprint": "the model's weights (another model under the same spec)",
            "image_set": "the image set", "settings": "the settings"}
    found = []
    for key, value in as_stored.items():
        stored = meta.get(key)
        if stored == value:
            continue
        if key == "settings" and isinstance(stored, dict):
            changed = [f"{name} {stored.get(name)!r} → {value[name]!r}" for name in value
                       if stored.get(name) != value[name]]
            found.append(f"the settings ({', '.join(changed)})")
        elif key == "model":
            found.append(f"the model ({stored} → {value})")
        elif key == "image_set" and isinstance(stored, dict):
            found.append(f"the image set ({stored.get('images')} → {value['images']} images"
                         + (", other files" if stored.get("images") == value["images"] else "")
                         + ")")
        else:
            found.append(what[key])
    return found


def check_settings(settings: AnalysisSettings, batch_size: int = DEFAULT_BATCH_SIZE,
                   num_workers: int = 0) -> None:
    """The numbers of an analysis, refused before any model loads or pass starts."""
    validation.require_all([
        ("--top-k", settings.top_k, validation.positive_int),
        ("--batch-size", batch_size, validation.positive_int),
        ("--workers", num_workers, validation.non_negative_int),
    ])
    check_convention(settings.convention)
    if settings.precision not in PRECISIONS:
        raise NeuronAttackError(f"--precision must be one of {', '.join(PRECISIONS)}.")


def check_out(out_dir: Path, overwrite: bool = False, shard: Shard = UNSHARDED) -> None:
    """An analysis folder, an empty one, or a new one; refused before any model loads."""
    if shard.count > 1 and overwrite:
        raise NeuronAttackError(
            "--overwrite cannot be combined with --shard: the shards would delete each other's "
            f"work; remove {out_dir} first, then start every shard."
        )
    validation.writable_folder(out_dir)
    # Shards start together: another shard's folder may exist before its meta.json does.
    if shard.count == 1 or not (Path(out_dir) / SHARDS).is_dir():
        outdir.claim(out_dir, SCHEMA, allow_nonempty=overwrite, flag="--overwrite")
    outdir.check_unlocked(out_dir)


def analyze(
    clip,
    image_set: ImageSet,
    out_dir: Path,
    settings: AnalysisSettings,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    num_workers: int = 0,
    checkpoint_seconds: float = 60.0,
    show_progress: bool = True,
    overwrite: bool = False,
    shard: Shard = UNSHARDED,
) -> Analysis:
    """Fit rank-one directions for ``settings.layers`` over ``image_set``; resumes if interrupted.

    ``clip`` is a ``LoadedClip`` (``neuronattack.models.load_clip``). Returns the directions and
    the meta record; raises ``NeuronAttackError`` if ``out_dir`` holds a different analysis.

    With ``shard`` I/N this process analyses only its share of the batches, keeps its state in
    ``OUT/shards/I-of-N/`` and meets the other N-1 processes there after each pass (``out_dir``
    must be a folder they all see); shard 0 merges and writes the directions, and every shard
    returns them. All N must run at the same time (a job array with N slots, or ``accelerate
    launch``), with the same batch size; the result equals one process's, bit for bit.
    """
    out_dir = Path(out_dir)
    check_settings(settings, batch_size, num_workers)
    check_out(out_dir, overwrite, shard)
    with outdir.locked(_state_dir(out_dir, shard)):
        result = _analyze_locked(clip, image_set, out_dir, settings, batch_size, device,
                                 num_workers, checkpoint_seconds, show_progress, overwrite, shard)
    if shard.count > 1:  # finished: the shard folders held only states, merged by now
        if shard.main:
            shutil.rmtree(out_dir / SHARDS, ignore_errors=True)
        else:
            for folder in (_state_dir(out_dir, shard), out_dir / SHARDS):
                # Gone already (shard 0 removed it), or not empty: others are still in it.
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return result


def _state_dir(out_dir: Path, shard: Shard) -> Path:
    """Where a process keeps its checkpoint (and its lock): the folder itself when unsharded."""
    return out_dir if shard.count == 1 else out_dir / SHARDS / shard.name


def _check_shard_layout(out_dir: Path, shard: Shard) -> None:
    """Refuse to mix a run split N ways with one split otherwise, or not split."""
    found = sorted(path.parent.name for path in (out_dir / SHARDS).glob(f"*/{CHECKPOINT}"))
    other = [name for name in found if not name.endswith(f"-of-{shard.count}")]
    if shard.count == 1 and found:
        raise NeuronAttackError(
            f"{out_dir} holds an analysis split into shards ({', '.join(found)}); finish it with "
            "the same --shard I/N commands (or accelerate launch), or pass --overwrite."
        )
    if other:
        raise NeuronAttackError(
            f"{out_dir} holds an analysis split another way ({', '.join(other)}); finish it with "
            "its own --shard I/N commands, or remove the folder."
        )
    if shard.count > 1 and (out_dir / CHECKPOINT).exists():
        raise NeuronAttackError(
            f"{out_dir} holds an analysis started without --shard; finish it that way, or "
            "remove the folder."
        )


def _analyze_locked(clip, image_set: ImageSet, out_dir: Path, settings: AnalysisSettings,
                    batch_size: int, device: str, num_workers: int, checkpoint_seconds: float,
                    show_progress: bool, overwrite: bool, shard: Shard) -> Analysis:
    visual = clip.model.visual
    settings = AnalysisSettings(
        layers=check_layers(settings.layers, len(visual.transformer.resblocks)),
        convention=settings.convention,
        top_k=settings.top_k,
        precision=settings.precision,
    )
    identity = _identity(clip, image_set, settings)
    meta_path = out_dir / META
    if meta_path.exists() and not overwrite:
        meta = read_json(meta_path, OVERWRITE, expect=dict)
        differences = _differences(meta, identity)
        if differences:
            raise NeuronAttackError(
                f"{out_dir} holds an analysis with other inputs: {'; '.join(differences)}; "
                "choose a new --out folder or pass --overwrite."
            )
        if meta.get("status") == "complete":
            return Analysis(out_dir, meta, load_directions(out_dir))
    elif overwrite:
        # The atlas goes too: it decomposes the old directions, and new directions must never be
        # served with the old words.
        for name in (META, DIRECTIONS, CHECKPOINT, IMAGES, *ATLAS_FILES):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / SHARDS, ignore_errors=True)
    _check_shard_layout(out_dir, shard)
    if settings.top_k > len(image_set) and shard.main:
        warn(f"--top-k {settings.top_k} is more than the {len(image_set):,} images; every "
             "image will be in every neuron's top-k, and the threshold is the smallest effect.")

    target = pick_device(device)
    dtype = check_precision(settings.precision, target)
    visual = visual.to(target)
    start, stop = shard.batch_range(len(image_set), batch_size)
    state = _StreamingState(visual, settings, _state_dir(out_dir, shard) / CHECKPOINT,
                            (start, stop), batch_size, identity)
    # The bases stay float32; only the traced pass runs in half precision.
    run_visual = visual if dtype == torch.float32 else copy.deepcopy(visual).to(dtype)
    meta = {**identity, "status": "running", "image_root": str(image_set.root),
            "image_set_description": image_set.describe(), "versions": versions(),
            "shards": shard.count, "batch_size": batch_size}
    # Shards write the same two files; the first one's stay (shard 0 rewrites meta at the end).
    if shard.count == 1 or not meta_path.exists():
        write_json(meta_path, meta)
    if shard.count == 1 or not (out_dir / IMAGES).exists():
        # top_images are indices into this list; it lets `neurons show` find the files later.
        write_json(out_dir / IMAGES, {"root": str(image_set.root),
                                      "paths": list(image_set.paths)})

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("images"), TimeRemainingColumn())
    with progress_bar(*columns, disable=not show_progress) as bar:
        try:
            for pass_index in range(state.progress["pass"], len(PASSES)):
                if pass_index == 1:
                    state.merge_means(_wait_for_shards(out_dir, shard, 1, state, show_progress))
                task = bar.add_task(f"pass {pass_index + 1}/2 ({PASSES[pass_index]})",
                                    total=stop - start,
                                    completed=state.progress["next_index"] - start)
                batches = iter_batches(image_set, clip.preprocess, batch_size,
                                       start=state.progress["next_index"], stop=stop,
                                       num_workers=num_workers)
                last_save = time.monotonic()
                for done, batch in enumerate(batches, start=1):
                    with torch.no_grad():
                        record = trace(run_visual, batch.pixels.to(target, dtype),
                                       mlp_layers=settings.layers).to(torch.float32)
                    state.add(pass_index, record, batch.indices, batches.skipped)
                    bar.update(task, completed=state.progress["next_index"] - start)
                    if (done in EARLY_CHECKPOINTS
                            or time.monotonic() - last_save > checkpoint_seconds):
                        state.save()
                        last_save = time.monotonic()
                state.finish_pass(pass_index, batches.skipped)
                bar.update(task, completed=stop - start)
        except BaseException:
            if state.consistent:  # otherwise the last periodic checkpoint stands
                state.save()
            raise

    if not shard.main:
        return _wait_for_result(out_dir, shard, show_progress)
    others = _wait_for_shards(out_dir, shard, len(PASSES), state, show_progress)
    state.merge_means(others)
    state.merge_top_k(others)
    images_used = state.images_used()
    directions = {layer: fitter.result() for layer, fitter in state.fitters.items()}
    mean_norm = state.norm_sum / images_used
    save_directions(out_dir / DIRECTIONS, directions)
    meta |= {
        "status": "complete",
        "images_used": images_used,
        "images_skipped": sorted(set(state.progress["skipped"]).union(
            *(progress["skipped"] for _, progress in others))),
        "mean_embedding_norm": mean_norm,
        "summary": summarize(directions, mean_norm),
    }
    write_json(meta_path, meta)
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return Analysis(out_dir, meta, directions)


def _wait_for_shards(out_dir: Path, shard: Shard, passes: int, state: _StreamingState,
                     show_progress: bool) -> list[tuple[dict, dict]]:
    """The other shards' ``(tensors, progress)`` once each has finished ``passes`` passes.

    Their checkpoints are the meeting point: a shard saves one at the end of every pass, and a
    killed shard that is started again resumes from it, so waiting survives restarts on both sides.
    """
    others = [Shard(index, shard.count) for index in range(shard.count) if index != shard.index]
    ready: dict[int, tuple[dict, dict]] = {}
    told = False
    while True:
        for other in others:
            if other.index in ready:
                continue
            path = _state_dir(out_dir, other) / CHECKPOINT
            if not path.exists():
                continue
            # The small header first: the tensors are read once, when the shard is ready.
            progress = state.check_peer(path, checkpoint_metadata(path))
            if progress["pass"] >= passes:
                tensors, metadata = load_tensors(path, with_metadata=True, remedy=OVERWRITE)
                ready[other.index] = (tensors, state.check_peer(path, metadata))
        waiting = [other.name for other in others if other.index not in ready]
        if not waiting:
            return [ready[other.index] for other in others]
        if show_progress and not told:
            Console(stderr=True).print(
                f"shard {shard.name} waits for shard(s) {', '.join(waiting)} to finish pass "
                f"{passes}/{len(PASSES)} in {out_dir / SHARDS}", highlight=False, markup=False)
            told = True
        time.sleep(POLL_SECONDS)


def checkpoint_metadata(path: Path) -> dict:
    """A checkpoint's string metadata, without reading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise damaged(path, str(error), OVERWRITE) from None


def _wait_for_result(out_dir: Path, shard: Shard, show_progress: bool) -> Analysis:
    """What a shard other than 0 returns: the merged directions, once shard 0 has written them."""
    if show_progress:
        Console(stderr=True).print(f"shard {shard.name} is done; shard 0 merges the shards",
                                   highlight=False, markup=False)
    meta_path = out_dir / META
    while True:
        meta = read_json(meta_path, OVERWRITE, expect=dict)
        if meta.get("status") == "complete":
            return Analysis(out_dir, meta, load_directions(out_dir))
        time.sleep(POLL_SECONDS)


class _StreamingState:
    """This process' part of both passes plus its progress, saved and restored together.

    Pass 1 adds each batch's summed coordinates to a :class:`TreeSum` (the mean is merged across
    shards before pass 2); pass 2 feeds the fitters' top-k lists. ``consistent`` is False while a
    batch is half-added: a checkpoint taken then would count that batch twice on resume, so an
    interruption at that moment keeps the previous checkpoint.
    """

    def __init__(self, visual: torch.nn.Module, settings: AnalysisSettings, path: Path,
                 image_range: tuple[int, int], batch_size: int, identity: dict):
        self.path = path
        self.start, self.stop = image_range
        self.batch_size = batch_size
        self.identity = json.dumps(identity, sort_keys=True)
        self.bases = {layer: effect_basis(visual, layer, convention=settings.convention)
                      for layer in settings.layers}
        self.fitters = {layer: RankOneFitter(basis, settings.top_k)
                        for layer, basis in self.bases.items()}
        self.sums = TreeSum()  # per batch: {layer}.coords [neurons, K], {layer}.shared [J], ...
        self.norm_sum = 0.0
        self.progress = {"pass": 0, "next_index": self.start, "skipped": []}
        self.consistent = True
        if path.exists():
            tensors, metadata = load_tensors(path, with_metadata=True, remedy=OVERWRITE)
            try:
                self.progress = self.check_peer(path, metadata)
                self.sums = TreeSum.from_state_dict(_sums_of(tensors))
                for layer, fitter in self.fitters.items():
                    fitter.load_state_dict(_fitter_state(tensors, layer))
            except (KeyError, ValueError, RuntimeError, TypeError) as error:
                raise damaged(path, f"its state does not fit this analysis: {error}",
                              OVERWRITE) from None

    def check_peer(self, path: Path, metadata: dict) -> dict:
        """The progress in a checkpoint's metadata, once it is known to be of this very run."""
        if metadata.get("identity", self.identity) != self.identity:
            raise NeuronAttackError(
                f"{path} is the state of an analysis with other inputs; remove {path.parent} "
                "or run that analysis with its own settings."
            )
        if int(metadata.get("batch_size", self.batch_size)) != self.batch_size:
            raise NeuronAttackError(
                f"{path} was written with --batch-size {metadata['batch_size']}; every shard "
                "and every resumed run must use the same batch size (the batches are shared)."
            )
        return json.loads(metadata["progress"])

    def add(self, pass_index: int, record, indices: torch.Tensor, skipped: tuple[str, ...]) -> None:
        coords = {layer: effect_coords(record, basis) for layer, basis in self.bases.items()}
        self.consistent = False
        if pass_index == 0:
            self._add_to_sums(record, coords, indices)
            self._note_skipped(skipped)
        else:
            for layer, fitter in self.fitters.items():
                fitter.add_to_top_k(*coords[layer], indices)
        # The end of this batch, not its last readable image: resumed batches stay aligned.
        batch_end = (int(indices[0]) // self.batch_size + 1) * self.batch_size
        self.progress["next_index"] = min(batch_end, self.stop)
        self.consistent = True

    def _add_to_sums(self, record, coords: dict, indices: torch.Tensor) -> None:
        """One leaf per batch (its sums, float64): batches are the same however images are
        sharded, so the leaves are too, and the tree fixes how they are added."""
        values = {"count": torch.tensor(float(len(indices)), dtype=torch.float64),
                  "norm": record.embedding.double().norm(dim=-1).sum()}
        for layer, (neuron, shared) in coords.items():  # [batch, neurons, K], [batch, J]
            values[f"{layer}.coords"] = neuron.double().sum(0)
            values[f"{layer}.shared"] = shared.double().sum(0)
        batch_index = int(indices[0]) // self.batch_size
        self.sums.add(batch_index, {name: value.cpu() for name, value in values.items()})

    def merge_means(self, others: list[tuple[dict, dict]]) -> None:
        """Set every fitter's pass-1 sums from this shard's and the others' trees."""
        tree = TreeSum()
        tree.merge(self.sums)
        for tensors, _ in others:
            tree.merge(TreeSum.from_state_dict(_sums_of(tensors)))
        total = tree.total()
        if total is None:
            raise NeuronAttackError("None of the images could be read; check the image folder.")
        for layer, fitter in self.fitters.items():
            fitter.set_mean_sums(total[f"{layer}.coords"], total[f"{layer}.shared"],
                                 int(total["count"]))
        self.norm_sum = float(total["norm"])

    def merge_top_k(self, others: list[tuple[dict, dict]]) -> None:
        for tensors, _ in others:
            for layer, fitter in self.fitters.items():
                state = _fitter_state(tensors, layer)
                if "top_norms" in state:  # a shard with no images has no lists
                    fitter.merge_top_k(state)

    def finish_pass(self, pass_index: int, skipped: tuple[str, ...]) -> None:
        if pass_index == 0:
            self._note_skipped(skipped)
        self.progress["pass"], self.progress["next_index"] = pass_index + 1, self.start
        self.save()

    def images_used(self) -> int:
        return next(iter(self.fitters.values())).count

    def save(self) -> None:
        tensors = {f"{layer}.{name}": tensor for layer, fitter in self.fitters.items()
                   for name, tensor in fitter.state_dict().items()}
        tensors |= {f"sum.{name}": tensor for name, tensor in self.sums.state_dict().items()}
        save_tensors(self.path, tensors, {"progress": json.dumps(self.progress),
                                          "identity": self.identity,
                                          "batch_size": str(self.batch_size)})

    def _note_skipped(self, skipped: tuple[str, ...]) -> None:
        """Unreadable files, kept across resumed runs without counting one twice."""
        self.progress["skipped"] = sorted(set(self.progress["skipped"]) | set(skipped))


def _sums_of(tensors: dict) -> dict:
    return {name[len("sum."):]: tensor for name, tensor in tensors.items()
            if name.startswith("sum.")}


def _fitter_state(tensors: dict, layer: int) -> dict:
    prefix = f"{layer}."
    return {name[len(prefix):]: tensor for name, tensor in tensors.items()
            if name.startswith(prefix)}


def summarize(directions: dict[int, RankOneDirections], mean_norm: float,
              significance: float = 0.01) -> list[dict]:
    """Per block: how many neurons are significant and how one-dimensional their effects are.

    A neuron counts as significant when its threshold (its k-th strongest centred effect) moves the
    embedding by at least ``significance`` of its norm: ``mean ‖rep‖`` in the centred convention;
    the reference convention is already in percent of each image's ``‖rep‖``.
    """
    rows = []
    for layer, fit in directions.items():
        unit = 100.0 if fit.convention == "reference" else mean_norm
        relative = fit.threshold / unit
        rows.append({
            "layer": layer,
            "neurons": len(fit.neurons),
            "significant": int((relative >= significance).sum()),
            "mean_variance_explained": float(fit.variance_explained.mean()),
            "median_threshold_relative": float(relative.median()),
        })
    return rows


def save_directions(path: Path, directions: dict[int, RankOneDirections]) -> None:
    tensors, conventions = {}, set()
    for layer, fit in directions.items():
        conventions.add(fit.convention)
        for field in fields(fit):
            value = getattr(fit, field.name)
            if isinstance(value, torch.Tensor):
                tensors[f"{layer}.{field.name}"] = value
    save_tensors(path, tensors, {"schema": SCHEMA, "convention": ",".join(sorted(conventions)),
                                 "layers": json.dumps(sorted(directions))})


def load_directions(out_dir: Path) -> dict[int, RankOneDirections]:
    path = Path(out_dir) / DIRECTIONS
    if not path.exists():
        raise NeuronAttackError(f"No {DIRECTIONS} in {out_dir}; run `neuronattack analyze` first.")
    tensors = load_tensors(path, remedy=OVERWRITE)
    meta_path = Path(out_dir) / META
    meta = require_fields(meta_path, read_json(meta_path, OVERWRITE, expect=dict),
                          {"settings": dict}, OVERWRITE)
    convention = meta["settings"].get("convention")
    try:
        layers = sorted({int(name.split(".")[0]) for name in tensors})
    except ValueError:
        layers = []
    names = [f"{layer}.{f.name}" for layer in layers for f in fields(RankOneDirections)
             if f.name not in ("layer", "convention")]
    require_tensors(path, tensors, names or ["{layer}.direction"], OVERWRITE)
    return {
        layer: RankOneDirections(
            layer=layer,
            convention=convention,
            **{f.name: tensors[f"{layer}.{f.name}"] for f in fields(RankOneDirections)
               if f.name not in ("layer", "convention")},
        )
        for layer in layers
    }
