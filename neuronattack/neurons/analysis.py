"""``neuronattack analyze``: rank-one directions of every neuron of some blocks over an image set.

Artifacts in the output folder:
- ``meta.json``: schema, model spec, image-set fingerprint, settings, versions, status, summary.
- ``directions.safetensors``: per block ``{layer}.direction`` etc. (see ``RankOneDirections``).
- ``checkpoint.safetensors`` while running: the streaming state, so an interrupted run resumes
  where it stopped; removed once the directions are written.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from neuronattack.artifacts import load_tensors, read_json, save_tensors, versions, write_json
from neuronattack.errors import NeuronAttackError
from neuronattack.imagesets import ImageSet, iter_batches
from neuronattack.lens.first_order import check_convention
from neuronattack.lens.neuron_effects import effect_basis, effect_coords
from neuronattack.lens.traced_pass import trace
from neuronattack.models.clip import weights_fingerprint
from neuronattack.neurons.directions import RankOneDirections, RankOneFitter

SCHEMA = "neuronattack.directions/1"
META, DIRECTIONS, CHECKPOINT = "meta.json", "directions.safetensors", "checkpoint.safetensors"
IMAGES = "images.json"
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PASSES = ("mean", "top-k")


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that changes the result; a run resumes only under identical settings."""

    layers: tuple[int, ...]
    convention: str = "centred"
    top_k: int = 100
    precision: str = "fp32"


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
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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


def _same_run(meta: dict, identity: dict) -> bool:
    as_stored = json.loads(json.dumps(identity))  # tuples become lists, as in meta.json
    return {key: meta.get(key) for key in as_stored} == as_stored


def analyze(
    clip,
    image_set: ImageSet,
    out_dir: Path,
    settings: AnalysisSettings,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    num_workers: int = 0,
    checkpoint_seconds: float = 60.0,
    show_progress: bool = True,
    overwrite: bool = False,
) -> Analysis:
    """Fit rank-one directions for ``settings.layers`` over ``image_set``; resumes if interrupted.

    ``clip`` is a ``LoadedClip`` (``neuronattack.models.load_clip``). Returns the directions and
    the meta record; raises ``NeuronAttackError`` if ``out_dir`` holds a different analysis.
    """
    out_dir = Path(out_dir)
    check_convention(settings.convention)
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
        meta = read_json(meta_path)
        if not _same_run(meta, identity):
            raise NeuronAttackError(
                f"{out_dir} holds an analysis of another model, image set or settings; choose a "
                "new --out folder or pass --overwrite."
            )
        if meta.get("status") == "complete":
            return Analysis(out_dir, meta, load_directions(out_dir))
    elif overwrite:
        for name in (META, DIRECTIONS, CHECKPOINT, IMAGES):
            (out_dir / name).unlink(missing_ok=True)

    target = pick_device(device)
    dtype = check_precision(settings.precision, target)
    visual = visual.to(target)
    state = _StreamingState(visual, settings, out_dir / CHECKPOINT)
    # The bases stay float32; only the traced pass runs in half precision.
    run_visual = visual if dtype == torch.float32 else copy.deepcopy(visual).to(dtype)
    meta = {**identity, "status": "running", "image_root": str(image_set.root),
            "image_set_description": image_set.describe(), "versions": versions()}
    write_json(meta_path, meta)
    # top_images are indices into this list; it lets `neurons show` find the files later.
    write_json(out_dir / IMAGES, {"root": str(image_set.root), "paths": list(image_set.paths)})

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("images"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show_progress) as bar:
        try:
            for pass_index in range(state.progress["pass"], len(PASSES)):
                task = bar.add_task(f"pass {pass_index + 1}/2 ({PASSES[pass_index]})",
                                    total=len(image_set), completed=state.progress["next_index"])
                batches = iter_batches(image_set, clip.preprocess, batch_size,
                                       start=state.progress["next_index"],
                                       num_workers=num_workers)
                last_save = time.monotonic()
                for batch in batches:
                    with torch.no_grad():
                        record = trace(run_visual, batch.pixels.to(target, dtype),
                                       mlp_layers=settings.layers).to(torch.float32)
                    state.add(pass_index, record, batch.indices, batches.skipped)
                    bar.update(task, completed=state.progress["next_index"])
                    if time.monotonic() - last_save > checkpoint_seconds:
                        state.save()
                        last_save = time.monotonic()
                state.finish_pass(pass_index, batches.skipped)
                bar.update(task, completed=len(image_set))
        except BaseException:
            if state.consistent:  # otherwise the last periodic checkpoint stands
                state.save()
            raise

    images_used = state.images_used()
    if images_used == 0:
        (out_dir / CHECKPOINT).unlink(missing_ok=True)
        raise NeuronAttackError(f"None of the {len(image_set)} images under {image_set.root} "
                                "could be read.")
    directions = {layer: fitter.result() for layer, fitter in state.fitters.items()}
    mean_norm = state.progress["norm_sum"] / images_used
    save_directions(out_dir / DIRECTIONS, directions)
    meta |= {
        "status": "complete",
        "images_used": images_used,
        "images_skipped": state.progress["skipped"],
        "mean_embedding_norm": mean_norm,
        "summary": summarize(directions, mean_norm),
    }
    write_json(meta_path, meta)
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return Analysis(out_dir, meta, directions)


class _StreamingState:
    """The fitters of every analysed block plus the run's progress, saved and restored together.

    ``consistent`` is False while a batch is half-added: a checkpoint taken then would count that
    batch twice on resume, so an interruption at that moment keeps the previous checkpoint.
    """

    def __init__(self, visual: torch.nn.Module, settings: AnalysisSettings, path: Path):
        self.path = path
        self.bases = {layer: effect_basis(visual, layer, convention=settings.convention)
                      for layer in settings.layers}
        self.fitters = {layer: RankOneFitter(basis, settings.top_k)
                        for layer, basis in self.bases.items()}
        self.progress = {"pass": 0, "next_index": 0, "norm_sum": 0.0, "skipped": []}
        self.consistent = True
        if path.exists():
            tensors, metadata = load_tensors(path, with_metadata=True)
            self.progress = json.loads(metadata["progress"])
            for layer, fitter in self.fitters.items():
                prefix = f"{layer}."
                fitter.load_state_dict({name[len(prefix):]: tensor
                                        for name, tensor in tensors.items()
                                        if name.startswith(prefix)})

    def add(self, pass_index: int, record, indices: torch.Tensor, skipped: tuple[str, ...]) -> None:
        coords = {layer: effect_coords(record, basis) for layer, basis in self.bases.items()}
        self.consistent = False
        for layer, fitter in self.fitters.items():
            if pass_index == 0:
                fitter.add_to_mean(*coords[layer])
            else:
                fitter.add_to_top_k(*coords[layer], indices)
        if pass_index == 0:
            self.progress["norm_sum"] += float(record.embedding.norm(dim=-1).sum())
            self._note_skipped(skipped)
        self.progress["next_index"] = int(indices[-1]) + 1
        self.consistent = True

    def finish_pass(self, pass_index: int, skipped: tuple[str, ...]) -> None:
        if pass_index == 0:
            self._note_skipped(skipped)
        self.progress["pass"], self.progress["next_index"] = pass_index + 1, 0
        self.save()

    def images_used(self) -> int:
        return next(iter(self.fitters.values())).count

    def save(self) -> None:
        tensors = {f"{layer}.{name}": tensor for layer, fitter in self.fitters.items()
                   for name, tensor in fitter.state_dict().items()}
        save_tensors(self.path, tensors, {"progress": json.dumps(self.progress)})

    def _note_skipped(self, skipped: tuple[str, ...]) -> None:
        """Unreadable files, kept across resumed runs without counting one twice."""
        self.progress["skipped"] = sorted(set(self.progress["skipped"]) | set(skipped))


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
    tensors = load_tensors(path)
    meta = read_json(Path(out_dir) / META)
    convention = meta["settings"]["convention"]
    layers = sorted({int(name.split(".")[0]) for name in tensors})
    return {
        layer: RankOneDirections(
            layer=layer,
            convention=convention,
            **{f.name: tensors[f"{layer}.{f.name}"] for f in fields(RankOneDirections)
               if f.name not in ("layer", "convention")},
        )
        for layer in layers
    }
