"""Train the toy CLIP contrastively on freshly drawn (image, caption) pairs, then report on it.

    python -m neuronattack.toy.train --steps 2200 --batch 64 --seed 0 --out PATH [--device cuda]

Every batch is new: scenes come from the cued training distribution, are captioned and drawn on
the fly in DataLoader workers (about 0.5 ms an image), so the model never sees an image twice and
there is no data set to ship. Seeded end to end: model init, each worker's data stream and the
evaluation scenes are all derived from fixed seeds, and batches arrive in a fixed order.

At the end the script measures, on held-out scenes without cues, zero-shot accuracy over the 12
classes, and how much each planted cue moves predictions towards its class (cue uptake), then
writes the fp16 weights and a JSON report next to them.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from neuronattack.toy.draw import draw, fade_of
from neuronattack.toy.model import (
    MODEL_NAME,
    TOKEN_TABLE,
    WEIGHTS_PATH,
    ZERO_SHOT_TEMPLATES,
    build_toy_clip,
    read_toy_weights,
    save_toy_weights,
    to_pixels,
    toy_tokenizer,
    with_article,
)
from neuronattack.toy.scenes import Scene, caption, sample_scene, with_condition
from neuronattack.toy.world import CLASSES, CUES, Cue

HELD_OUT_SEED = 10_000  # fixed, so every training run is scored on the same held-out scenes
LOG_SCALE_MAX = math.log(100.0)  # CLIP's clamp on the learnable temperature


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 2200
    batch: int = 64
    seed: int = 0
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    eval_scenes: int = 1200
    uptake_scenes: int = 400  # per cue
    device: str = "cpu"
    # bf16 autocast roughly halves a CPU step on chips with bf16 matmuls (AVX512-BF16, AMX) and
    # is the usual choice on GPUs; the weights and optimiser state stay float32 either way.
    precision: str = "bf16"
    # CPU threads for torch; None keeps torch's default (all cores). On a machine shared with
    # other jobs one thread is often several times faster: OpenMP threads that wait for a
    # descheduled peer burn their time slices.
    threads: int | None = None
    # Processes drawing batches while the model trains; 0 draws them in the training loop.
    workers: int = 1
    # Weights to start from (a fine-tune), or None to start from the seeded random init.
    init: str | None = None


def make_batch(
    rng: random.Random, batch: int, tokenizer: open_clip.tokenizer.SimpleTokenizer
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` new training pairs: pixels [batch, 3, 64, 64] and tokens [batch, context]."""
    scenes = [sample_scene(rng) for _ in range(batch)]
    captions = [caption(scene, rng) for scene in scenes]
    images = [draw(scene, rng.getrandbits(32)) for scene in scenes]
    return to_pixels(images), tokenizer(captions)


class PairStream(IterableDataset):
    """``steps`` training batches, each worker drawing its share from its own seeded stream.

    The DataLoader takes batches from its workers in turn, so the order of batches depends only
    on the seed and the number of workers.
    """

    def __init__(self, seed: int, batch: int, steps: int) -> None:
        self.seed, self.batch, self.steps = seed, batch, steps

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(f"train-data:{self.seed}:{worker}")
        tokenizer = toy_tokenizer()
        for _ in range(worker, self.steps, workers):
            yield make_batch(rng, self.batch, tokenizer)


def contrastive_loss(
    model: open_clip.CLIP, pixels: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over the batch, with the model's learnable temperature."""
    image = F.normalize(model.encode_image(pixels), dim=-1)
    text = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp() * image @ text.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def make_optimizer(model: open_clip.CLIP, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW grouped as open_clip does: no decay on gains, biases, temperature or 1-d tensors."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        skip = param.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to zero."""
    warmup = max(1, round(settings.warmup_fraction * settings.steps))
    if step < warmup:
        return settings.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, settings.steps - warmup)
    return settings.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train_step(
    model: open_clip.CLIP,
    optimizer: torch.optim.Optimizer,
    pixels: torch.Tensor,
    tokens: torch.Tensor,
    precision: str = "fp32",
) -> float:
    """One optimiser step on one batch; returns the loss before the step."""
    with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = contrastive_loss(model, pixels, tokens)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, LOG_SCALE_MAX)
    return float(loss.detach())


def held_out_scenes(count: int, seed: int = HELD_OUT_SEED) -> list[tuple[Scene, int]]:
    """Cue-free scenes with one kind of object (so the label is unambiguous), with draw seeds."""
    rng = random.Random(f"held-out:{seed}")
    return [(sample_scene(rng, with_cues=False, max_kinds=1), rng.getrandbits(32))
            for _ in range(count)]


@torch.no_grad()
def class_text_features(
    model: open_clip.CLIP, tokenizer: open_clip.tokenizer.SimpleTokenizer, device: str = "cpu"
) -> torch.Tensor:
    """Unit text embeddings [12, dim] of the classes, averaged over :data:`ZERO_SHOT_TEMPLATES`."""
    features = []
    for cls in CLASSES:
        tokens = tokenizer([template.format(with_article(cls)) for template in ZERO_SHOT_TEMPLATES])
        embedded = F.normalize(model.encode_text(tokens.to(device)), dim=-1)
        features.append(F.normalize(embedded.mean(dim=0), dim=-1))
    return torch.stack(features)


@torch.no_grad()
def predict(
    model: open_clip.CLIP,
    text_features: torch.Tensor,
    scenes: Sequence[tuple[Scene, int]],
    device: str = "cpu",
    batch: int = 200,
) -> torch.Tensor:
    """Zero-shot class indices for drawn scenes."""
    predictions = []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start : start + batch]
        pixels = to_pixels([draw(scene, seed) for scene, seed in chunk]).to(device)
        image = F.normalize(model.encode_image(pixels), dim=-1)
        predictions.append((image @ text_features.T).argmax(dim=-1).cpu())
    return torch.cat(predictions)


def zero_shot_accuracy(
    model: open_clip.CLIP,
    tokenizer: open_clip.tokenizer.SimpleTokenizer,
    count: int = 1200,
    device: str = "cpu",
) -> float:
    """Fraction of ``count`` held-out cue-free scenes whose main class is ranked first."""
    scenes = held_out_scenes(count)
    predicted = predict(model, class_text_features(model, tokenizer, device), scenes, device)
    labels = torch.tensor([CLASSES.index(scene.main_class) for scene, _ in scenes])
    return float((predicted == labels).float().mean())


def cue_uptake(
    model: open_clip.CLIP,
    tokenizer: open_clip.tokenizer.SimpleTokenizer,
    count: int = 400,
    device: str = "cpu",
) -> dict[str, dict[str, float]]:
    """For each cue: how often held-out scenes of *other* classes are called the cue's class,
    with the cue's condition made true versus false in otherwise identical scenes (same scene,
    same seed).

    The difference (``uptake``, with a 95% interval over the paired scenes) is what the model
    learned from the planted correlation; it is measured on images that contain no object of the
    cue's class, drawn from the held-out distribution, faded photos included (``uptake_faded``
    and ``uptake_clear`` split it by :func:`~neuronattack.toy.draw.fade_of`).
    """
    text_features = class_text_features(model, tokenizer, device)
    report = {}
    for cue in CUES:
        rng = random.Random(f"cue-uptake:{cue.cls}:{cue.kind}:{cue.value}")
        others = [(s, seed) for s, seed in held_out_scenes(count * 2) if s.main_class != cue.cls]
        pairs = others[:count]
        with_cue = [(with_condition(s, cue, True, rng), seed) for s, seed in pairs]
        without = [(with_condition(s, cue, False, rng), seed) for s, seed in pairs]
        target = CLASSES.index(cue.cls)
        hits = {name: (predict(model, text_features, scenes, device) == target).float()
                for name, scenes in (("with", with_cue), ("without", without))}
        faded = torch.tensor([fade_of(seed) < 1 for _, seed in pairs])
        report[_cue_name(cue)] = {
            "with": float(hits["with"].mean()),
            "without": float(hits["without"].mean()),
            **paired_difference(hits["with"], hits["without"]),
            "uptake_faded": float((hits["with"] - hits["without"])[faded].mean()),
            "uptake_clear": float((hits["with"] - hits["without"])[~faded].mean()),
            "scenes": len(pairs),
        }
    return report


def paired_difference(first: torch.Tensor, second: torch.Tensor) -> dict[str, float]:
    """Mean of ``first - second`` over paired 0/1 outcomes [n], with a normal 95% interval."""
    difference = (first - second).double()
    mean = float(difference.mean())
    half = 1.96 * float(difference.std(unbiased=True)) / math.sqrt(len(difference))
    return {"uptake": mean, "uptake_low": mean - half, "uptake_high": mean + half}


def _cue_name(cue: Cue) -> str:
    return f"{cue.cls}<-{cue.kind}:{cue.value}"


def train(settings: TrainSettings, out: Path, show_progress: bool = True) -> dict:
    """Train, evaluate, write ``out`` (fp16 safetensors) and ``out.with_suffix('.json')``."""
    start = time.perf_counter()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    model = build_toy_clip(settings.seed)
    if settings.init is not None:
        model.load_state_dict(fine_tune_state(model, Path(settings.init)))
    model = model.to(settings.device).train()
    tokenizer = toy_tokenizer()
    optimizer = make_optimizer(model, settings.lr, settings.weight_decay)
    batches = DataLoader(
        PairStream(settings.seed, settings.batch, settings.steps),
        batch_size=None,
        num_workers=settings.workers,
        prefetch_factor=4 if settings.workers else None,
    )
    losses: list[float] = []
    curve: list[tuple[int, float]] = []
    report_every = max(1, settings.steps // 20)
    with _progress(show_progress) as progress:
        task = progress.add_task("training", total=settings.steps, loss=float("nan"))
        for step, (pixels, tokens) in enumerate(batches):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, settings)
            losses.append(train_step(model, optimizer, pixels.to(settings.device),
                                     tokens.to(settings.device), settings.precision))
            recent = sum(losses[-20:]) / len(losses[-20:])
            progress.update(task, advance=1, loss=recent)
            if (step + 1) % report_every == 0:
                # A line per 5%: kept in logs of runs without a terminal, where no bar is drawn.
                progress.console.print(f"step {step + 1}: loss {recent:.3f}")
                curve.append((step + 1, round(recent, 4)))
    train_seconds = time.perf_counter() - start
    model.eval()
    accuracy = zero_shot_accuracy(model, tokenizer, settings.eval_scenes, settings.device)
    uptake = cue_uptake(model, tokenizer, settings.uptake_scenes, settings.device)
    save_toy_weights(model.cpu(), out, {"seed": str(settings.seed), "steps": str(settings.steps)})
    report = {
        "model": MODEL_NAME,
        "settings": asdict(settings),
        "zero_shot_accuracy": accuracy,
        "chance": 1 / len(CLASSES),
        "held_out_scenes": settings.eval_scenes,
        "cue_uptake": uptake,
        "cues": [asdict(cue) for cue in CUES],
        "loss_first_20": sum(losses[:20]) / len(losses[:20]),
        "loss_last_20": sum(losses[-20:]) / len(losses[-20:]),
        "loss_curve": curve,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vision_parameters": sum(p.numel() for p in model.visual.parameters()),
        "file_bytes": out.stat().st_size,
        "threads": torch.get_num_threads(),
        "versions": {pkg: version(pkg) for pkg in ("torch", "open_clip_torch", "pillow")},
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def fine_tune_state(fresh: open_clip.CLIP, init: Path) -> dict[str, torch.Tensor]:
    """The state of the weights in ``init``, with the fresh init's rows for every world token the
    init never saw (words added to the world since it was trained), so a new word starts from a
    random row like it would in a fresh run rather than from zero."""
    state = read_toy_weights(init)
    table, fresh_table = state[TOKEN_TABLE], fresh.token_embedding.weight.detach()
    unseen = table.abs().sum(dim=1) == 0
    table[unseen] = fresh_table[unseen]
    return state


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show,
    )


def main(argv: Sequence[str] | None = None) -> None:
    defaults = TrainSettings()
    parser = argparse.ArgumentParser(prog="python -m neuronattack.toy.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--eval-scenes", type=int, default=defaults.eval_scenes)
    parser.add_argument("--uptake-scenes", type=int, default=defaults.uptake_scenes)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=defaults.device)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=defaults.precision)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--init", default=None,
                        help="start from these weights (safetensors) instead of a random init")
    args = parser.parse_args(argv)
    settings = TrainSettings(steps=args.steps, batch=args.batch, seed=args.seed, lr=args.lr,
                             eval_scenes=args.eval_scenes, uptake_scenes=args.uptake_scenes,
                             device=args.device,
                             precision=args.precision, threads=args.threads,
                             workers=args.workers, init=args.init)
    report = train(settings, args.out)
    print(f"zero-shot accuracy on {settings.eval_scenes} held-out cue-free scenes: "
          f"{report['zero_shot_accuracy']:.1%} (chance {report['chance']:.1%})")
    for name, rates in report["cue_uptake"].items():
        print(f"cue {name}: called {name.split('<-')[0]} {rates['with']:.1%} with the cue, "
              f"{rates['without']:.1%} without: uptake {rates['uptake']:+.1%} "
              f"[{rates['uptake_low']:+.1%}, {rates['uptake_high']:+.1%}] "
              f"(faded {rates['uptake_faded']:+.1%}, clear {rates['uptake_clear']:+.1%})")
    print(f"wrote {args.out} ({report['file_bytes'] / 1e6:.1f} MB) and "
          f"{args.out.with_suffix('.json')} in {report['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
