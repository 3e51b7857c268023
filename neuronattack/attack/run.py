"""One attack: a class pair, several arms (the method and its baselines), judged images on disk.

Output folder:
- ``images/{pair}-s{seed}-{arm}-{index:04d}.png`` (:func:`image_name`; the pair as ``cat-dog``),
  each with its prompt, seed and models in PNG text chunks, so an image can be re-rendered from
  the file alone, and beside it ``…-why.png`` (:func:`why_map_path`), where it pulled toward the
  target;
- ``results.jsonl``: one record per image (appended and fsynced one line at a time; a line cut by a
  crash is ignored and redone), the source of truth for resuming;
- ``selection-{arm}.json``: the neurons and words each arm wrote with, and what the filter dropped;
- ``meta.json`` (settings and provenance) and ``summary.html``.

Every arm renders the same number of images with the same seeds, so rates compare like for like.
Images are rendered ``render_batch`` at a time across arms (and attacks: :func:`run_attacks`),
each from its own seed, in batches cut at fixed places of the whole queue (:func:`queue_batches`).

A record holds the attacked model's verdicts: ``top1_success`` (its top-1 over the class set is
the target: the headline), ``success`` (the paper's binary δ test) and ``margin`` (target −
source similarity), and the checker's: ``valid`` and the image's ``kind`` (contextual,
typographic, distractor). Records are :class:`~neuronattack.attack.records.AttackRecord`s;
those written before these fields existed are read with what they lack derived.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import cache, cached_property
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from torch import Tensor

from neuronattack import outdir, validation
from neuronattack.artifacts import file_hash, read_json, versions, write_json, write_text
from neuronattack.attack.filters import WordFilter, make_filter, name_tokens
from neuronattack.attack.judge import KINDS, Judge
from neuronattack.attack.records import (
    RESULTS,
    AttackRecord,
    append_record,
    read_records,
    record_id,
)
from neuronattack.attack.selection import (
    Selection,
    select_random_neurons,
    select_random_neurons_own_words,
    select_random_words,
    select_similar_words,
    select_words,
    source_only,
)
from neuronattack.attack.settings import ARMS, RENDER_BATCH, AttackSettings, pair_name
from neuronattack.attack.stats import bootstrap_mean_difference, rate_summary
from neuronattack.errors import NeuronAttackError
from neuronattack.models.zeroshot import find_class
from neuronattack.progress import progress_bar

if TYPE_CHECKING:
    from neuronattack.models.checking import Checker
    from neuronattack.models.generators import Generator
    from neuronattack.models.loaded import LoadedClip
    from neuronattack.neurons.atlas import Atlas
    from neuronattack.writing import Writer

HEADLINE_KIND = "contextual"
SCHEMA = "neuronattack.attack/1"
WHY_SUFFIX = "-why.png"
# (attacked model, images, their paths, source and target class embeddings) -> paths written
WhyMapWriter = Callable[["LoadedClip", Sequence[Image.Image], Sequence[Path], Tensor, Tensor],
                        object]


@dataclass
class AttackContext:
    """The models and resources an attack uses; built once and shared across pairs."""

    atlas: Atlas
    clip: LoadedClip  # the attacked model
    generator: Generator
    writer: Writer
    judges: list[Judge]  # judges[0] judges with the attacked model; the rest measure transfer
    checker: Checker
    word_embeddings: Tensor  # [atlas words, out_dim] unit, bare words, for the target filter
    target_embedding_of: Callable[[str], Tensor]  # name -> unit bare-name embedding [out_dim]
    # What the generator can draw, for the random-words arm; None: every atlas word.
    drawable_words: list[str] | None = None
    render_batch: int = RENDER_BATCH
    extra_meta: dict = field(default_factory=dict)
    # Writes a target-minus-source patch map beside each image: ``maps.why.write_why_maps``,
    # set by ``pipeline.attack_context``, which sits above both; None writes none.
    write_why_maps: WhyMapWriter | None = None

    @property
    def class_names(self) -> list[str]:
        return self.judges[0].class_names

    @cached_property
    def atlas_hash(self) -> str:
        """Content hash of the atlas' word decompositions: which atlas made an image."""
        return file_hash(self.atlas.root / "atlas.safetensors")


def resolve_pair(class_names: Sequence[str], source: str, target: str) -> tuple[int, int]:
    """Class indices of source and target, with close-match suggestions for typos."""
    source, target = find_class(source, class_names), find_class(target, class_names)
    if source == target:
        raise NeuronAttackError(f"Source and target are the same class ('{source}').")
    return class_names.index(source), class_names.index(target)


def word_filter_for(context: AttackContext, target: str, settings: AttackSettings) -> WordFilter:
    return make_filter(context.atlas.words, context.word_embeddings,
                       context.target_embedding_of(target), settings.similarity_percentile,
                       settings.block_list,
                       context.class_names if settings.class_filter else None, settings.source)


def select_for_arm(context: AttackContext, settings: AttackSettings, arm: str, delta: Tensor,
                   word_filter: WordFilter) -> Selection:
    source, target = settings.source, settings.target
    if arm == "method":
        return select_words(context.atlas, source, target, delta, word_filter,
                            settings.n_neurons, settings.n_words)
    if arm == "random-neurons":
        return select_random_neurons(context.atlas, source, target, delta, word_filter,
                                     settings.n_neurons, settings.n_words, seed=settings.seed)
    if arm == "random-neurons-own":
        return select_random_neurons_own_words(context.atlas, source, target, delta, word_filter,
                                               settings.n_neurons, settings.n_words,
                                               seed=settings.seed)
    if arm == "random-words":
        drawable = context.drawable_words or list(context.atlas.words)
        return select_random_words(source, target, word_filter, drawable, settings.n_words,
                                   seed=settings.seed)
    if arm == "similar-words":
        return select_similar_words(source, target, word_filter, settings.n_words)
    if arm == "source-only":
        return source_only(source, target)
    raise NeuronAttackError(f"Unknown arm {arm!r}; choose from {', '.join(ARMS)}.")


def forbidden_words(target: str, selection: Selection) -> set[str]:
    """What no sentence may contain: the target, its tokens, every word the filter dropped."""
    return {target.lower(), *name_tokens(target), *(d["word"] for d in selection.dropped)}


def image_seeds(settings: AttackSettings) -> list[int]:
    """The same seeds for every arm: image i of each arm is drawn from the same noise."""
    return [image_seed(settings.seed, index) for index in range(settings.n)]


def image_seed(run_seed: int, index: int) -> int:
    """Image ``index``'s seed in a run: its own, whatever batch it is rendered in."""
    # A prime stride far from the generator's retry offset keeps runs' seeds apart.
    return run_seed * 2_147_483_647 + index


def image_name(pair: str, seed: int, arm: str, index: int) -> str:
    """Where an image is saved in its attack folder, as records hold it."""
    return f"images/{pair}-s{seed}-{arm}-{index:04d}.png"


def why_map_path(image_path: str | Path) -> Path:
    """Where an image's why-map lives: next to it, ``NAME-why.png``."""
    path = Path(image_path)
    return path.with_name(path.stem + WHY_SUFFIX)


def _record_id_of(line: str) -> str | None:
    """The id of a results line; None for a line a crash cut short."""
    try:
        return json.loads(line)["id"]
    except json.JSONDecodeError:
        return None


def _repair_tail(path: Path) -> None:
    """Cut a partial last line so the next append starts on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def save_png(image: Image.Image, path: Path, record: AttackRecord) -> None:
    info = PngInfo()
    fields = record.to_json()
    for key in ("prompt", "negative_prompt", "seed"):
        info.add_text(key, str(fields[key]))
    info.add_text("generator", json.dumps(record.generator))
    info.add_text("model", record.model)
    info.add_text("neuronattack", json.dumps({k: fields[k] for k in (
        "id", "arm", "words", "neurons", "source", "target", "atlas", "run_seed")}))
    temporary = path.with_name(f".{path.name}.tmp")
    image.save(temporary, format="PNG", pnginfo=info)
    os.replace(temporary, path)


def save_pngs(pngs: Sequence[tuple[Image.Image, Path, AttackRecord]]) -> None:
    """:func:`save_png` for each, in parallel threads (zlib lets go of the GIL while it
    compresses): on a GPU, encoding the PNGs one by one took most of a campaign's time outside
    the generator. Returns once every file is written, so a record never precedes its image."""
    for _ in _png_writers().map(lambda png: save_png(*png), pngs):
        pass


@cache
def _png_writers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                              thread_name_prefix="neuronattack-png")


def check_out(out_dir: Path, allow_foreign: bool = False) -> None:
    """An attack folder (resumed), an empty or a new one, or with ``allow_foreign`` any folder
    that holds no other neuronattack output; refused before any model loads."""
    validation.writable_folder(out_dir)
    outdir.claim(out_dir, SCHEMA, allow_nonempty=allow_foreign, flag=outdir.ALLOW_FOREIGN)
    outdir.check_unlocked(out_dir)


def run_attack(context: AttackContext, settings: AttackSettings, out_dir: Path,
               show_progress: bool = True, allow_foreign_out: bool = False) -> list[AttackRecord]:
    """Render, judge and record every image of every arm; skips what ``results.jsonl`` holds.

    ``allow_foreign_out``: ``out_dir`` may hold files that are not ours (see :func:`check_out`).
    """
    return run_attacks(context, [(settings, Path(out_dir))], show_progress,
                       allow_foreign_out)[0]


def run_attacks(context: AttackContext, attacks: Sequence[tuple[AttackSettings, Path]],
                show_progress: bool = True,
                allow_foreign_out: bool = False) -> list[list[AttackRecord]]:
    """Several attacks, each into its own folder, rendered as one queue: a render batch may hold
    images of several arms and attacks, so the generator gets full batches however small the
    arms are. Returns each attack's records, in order.

    The attacks share one negative prompt (a pipeline call takes one). Every folder is locked for
    the whole queue, and records are still written to each attack's own results file.
    """
    if len({settings.negative_prompt for settings, _ in attacks}) > 1:
        raise ValueError("attacks rendered as one queue must share one negative prompt")
    for settings, out_dir in attacks:
        validation.attack_settings(settings)
        resolve_pair(context.class_names, settings.source, settings.target)  # before any folder
        check_out(out_dir, allow_foreign_out)
    with ExitStack() as stack:
        for _, out_dir in attacks:
            stack.enter_context(outdir.locked(out_dir))
        planned = [plan_attack(context, settings, out_dir) for settings, out_dir in attacks]
        render_queue(context, planned, show_progress)
        return [finish(attack) for attack in planned]


@dataclass(eq=False)  # compared and hashed as itself: a queue groups its jobs by attack
class PlannedAttack:
    """An attack ready to render: settings resolved, folder checked, its selections written."""

    settings: AttackSettings
    out_dir: Path
    pair: str
    source_index: int
    target_index: int
    selections: dict[str, Selection]
    done: set[str]  # ids of the records ``results.jsonl`` holds
    sentences: dict[str, list] = field(default_factory=dict)  # arm -> n writing.Sentence

    @property
    def results(self) -> Path:
        return self.out_dir / RESULTS

    def forget(self, ids: set[str]) -> None:
        """Drop these records from the results file (atomically); their images are redone."""
        kept = [line for line in self.results.read_text(encoding="utf-8").splitlines()
                if _record_id_of(line) not in ids]
        write_text(self.results, "".join(f"{line}\n" for line in kept))
        self.done -= ids


@dataclass(frozen=True)
class Job:
    """One image of the render queue: image ``index`` of ``arm`` in ``attack``."""

    attack: PlannedAttack
    arm: str
    index: int

    @property
    def id(self) -> str:
        return record_id(self.attack.pair, self.attack.settings.seed, self.arm, self.index)

    @property
    def done(self) -> bool:
        return self.id in self.attack.done


def plan_attack(context: AttackContext, settings: AttackSettings,
                out_dir: Path) -> PlannedAttack:
    """Check or write the folder's meta.json, read what is done, write each arm's selection."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    source_index, target_index = resolve_pair(context.class_names, settings.source,
                                              settings.target)
    settings = AttackSettings(**{**asdict(settings), "source": context.class_names[source_index],
                                 "target": context.class_names[target_index]})
    _check_or_write_meta(out_dir, context, settings)
    _repair_tail(out_dir / RESULTS)
    main_judge = context.judges[0]
    delta = main_judge.class_embeddings[target_index] - main_judge.class_embeddings[source_index]
    word_filter = word_filter_for(context, settings.target, settings)
    selections = {}
    for arm in settings.arms:
        selections[arm] = select_for_arm(context, settings, arm, delta, word_filter)
        write_json(out_dir / f"selection-{arm}.json", selections[arm].as_dict())
    return PlannedAttack(settings, out_dir, pair_name(settings.source, settings.target),
                         source_index, target_index, selections,
                         {record.id for record in read_records(out_dir / RESULTS)})


def plan_jobs(attacks: Sequence[PlannedAttack]) -> list[Job]:
    """Every image of every attack, done or not, attack by attack and arm by arm: the queue's
    order, which fixes each batch's images whatever a run finds done."""
    return [Job(attack, arm, index) for attack in attacks for arm in attack.settings.arms
            for index in range(attack.settings.n)]


def queue_batches(jobs: Sequence[Job], size: int) -> list[list[Job]]:
    """The queue cut into render batches at fixed places.

    An image's pixels and scores depend, in their last bits, on which images share its batch, so
    batches are cut from the whole queue (finished images included) rather than from what is left:
    a resumed run then renders every batch exactly as an uninterrupted run does.
    """
    return [list(jobs[start:start + size]) for start in range(0, len(jobs), size)]


def forget_cut_batches(batches: Sequence[Sequence[Job]]) -> None:
    """A kill while a batch's records were being appended leaves part of them: forget that part,
    so the batch is rendered again whole (and identically)."""
    cut: dict[PlannedAttack, set[str]] = {}
    for batch in batches:
        finished = [job for job in batch if job.done]
        if 0 < len(finished) < len(batch):
            for job in finished:
                cut.setdefault(job.attack, set()).add(job.id)
    for attack, ids in cut.items():
        attack.forget(ids)


def write_sentences(context: AttackContext, attack: PlannedAttack) -> None:
    """The sentences of every arm that still has images to render (writers can be slow)."""
    settings = attack.settings
    for arm in settings.arms:
        if all(record_id(attack.pair, settings.seed, arm, index) in attack.done
               for index in range(settings.n)):
            continue
        selection = attack.selections[arm]
        attack.sentences[arm] = context.writer.write(
            settings.source, [w.word for w in selection.words], settings.n, settings.seed,
            forbidden_words(settings.target, selection))


def render_queue(context: AttackContext, attacks: Sequence[PlannedAttack],
                 show_progress: bool) -> None:
    """Render what the attacks lack, ``context.render_batch`` images per generator call across
    arm and attack boundaries, appending each image's record to its own attack's results."""
    batches = queue_batches(plan_jobs(attacks), context.render_batch)
    forget_cut_batches(batches)
    for attack in attacks:
        write_sentences(context, attack)
    first = attacks[0].settings
    label = f"{first.source} → {first.target}" + (
        f" and {len(attacks) - 1} more" if len(attacks) > 1 else "")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with progress_bar(*columns, disable=not show_progress) as bar:
        task = bar.add_task(label, total=sum(len(batch) for batch in batches),
                            completed=sum(len(attack.done) for attack in attacks))
        for batch in batches:
            if all(job.done for job in batch):
                continue
            for attack, records in _render_and_judge(context, batch):
                for record in records:
                    append_record(attack.results, record)
            bar.advance(task, len(batch))


def finish(attack: PlannedAttack) -> list[AttackRecord]:
    records = read_records(attack.results)
    write_summary(attack.out_dir, records)
    return records


def _render_and_judge(context: AttackContext,
                      batch: Sequence[Job]) -> list[tuple[PlannedAttack, list[AttackRecord]]]:
    """One generator call for the batch, then judging attack by attack (each its own pair)."""
    settings = batch[0].attack.settings
    sentences = [job.attack.sentences[job.arm][job.index] for job in batch]
    seeds = [image_seed(job.attack.settings.seed, job.index) for job in batch]
    rendered = context.generator.render([sentence.text for sentence in sentences], seeds,
                                        negative_prompt=settings.negative_prompt)
    parts = []
    for attack, group in groupby(zip(batch, sentences, rendered, strict=True),
                                 key=lambda item: item[0].attack):
        jobs, group_sentences, results = zip(*group, strict=True)
        parts.append((attack, _judge_and_record(context, jobs, group_sentences, results)))
    return parts


def _judge_and_record(context: AttackContext, jobs: Sequence[Job], sentences: Sequence,
                      rendered: Sequence) -> list[AttackRecord]:
    """Judge, check and record one attack's images of a batch; save their PNGs and why-maps."""
    attack = jobs[0].attack
    settings, source_index, target_index = attack.settings, attack.source_index, attack.target_index
    prompts = [sentence.text for sentence in sentences]
    images = [result.image for result in rendered if not result.failed]
    judgements = {judge.name: iter(judge.judge(images, source_index, target_index))
                  for judge in context.judges} if images else {}
    kept = [(prompt, result.seed) for prompt, result in zip(prompts, rendered, strict=True)
            if not result.failed]
    verdicts = iter(context.checker.check(
        images, [prompt for prompt, _ in kept], source_index, target_index,
        seeds=[seed for _, seed in kept])) if images else iter(())
    records, pngs = [], []
    for job, sentence, result in zip(jobs, sentences, rendered, strict=True):
        neuron_of = {w.word: w.neuron for w in attack.selections[job.arm].words}
        request = {
            "id": job.id, "source": settings.source, "target": settings.target,
            "arm": job.arm, "index": job.index, "prompt": sentence.text,
            "negative_prompt": settings.negative_prompt, "words": tuple(sentence.words_used),
            "neurons": tuple(sorted({neuron_of[w] for w in sentence.words_used
                                     if neuron_of.get(w)})),
            "seed": result.seed, "requested_seed": result.requested_seed,
            "retried": result.retried, "failed": result.failed, "failure": result.reason,
            "generator": {"name": context.generator.name, **context.generator.settings},
            "model": context.clip.spec, "atlas": context.atlas_hash, "writer": context.writer.name,
            "run_seed": settings.seed,
        }
        if result.failed:
            record = AttackRecord(**request)
        else:
            scores = {name: next(values).as_dict() for name, values in judgements.items()}
            verdict = next(verdicts).as_dict()
            main = scores[context.judges[0].name]
            image = image_name(attack.pair, settings.seed, job.arm, job.index)
            file = attack.out_dir / image
            record = AttackRecord(
                **request, image=image, scores=scores, success=main["success"],
                top1_success=main["top1_success"], margin=main["margin"],
                valid=verdict["valid"], kind=verdict["kind"], verdict=verdict)
            pngs.append((result.image, file, record))
        records.append(record)
    save_pngs(pngs)
    if context.write_why_maps is not None and images:
        rows = context.judges[0].class_embeddings
        context.write_why_maps(context.clip, images,
                               [attack.out_dir / r.image for r in records if r.image],
                               rows[source_index], rows[target_index])
    return records


def _check_or_write_meta(out_dir: Path, context: AttackContext, settings: AttackSettings) -> None:
    meta = {
        "schema": SCHEMA,
        "settings": json.loads(json.dumps(asdict(settings))),
        "model": context.clip.spec,
        "atlas": {"path": str(context.atlas.root), "hash": context.atlas_hash},
        "generator": {"name": context.generator.name,
                      **json.loads(json.dumps(context.generator.settings, default=str))},
        "writer": context.writer.name,
        "judges": [judge.name for judge in context.judges],
        "checker": context.checker.name,
        "classes": len(context.class_names),
        **context.extra_meta,
    }
    path = out_dir / "meta.json"
    if path.exists():
        stored = read_json(path)
        if {key: stored.get(key) for key in meta} != meta:
            raise NeuronAttackError(
                f"{out_dir} holds an attack with other settings or models; choose a new --out "
                "folder or delete it."
            )
        return
    write_json(path, meta | {"versions": versions()})


def summarize(records: Sequence[AttackRecord], seed: int = 0) -> dict[str, dict]:
    """Per arm, every rate over the images rendered, with 95% Wilson intervals:

    - ``contextual_top1`` (the headline): valid, top-1 is the target, only the source drawn;
    - ``top1`` and ``top1_by_kind``: valid and top-1 is the target, all kinds and per kind;
    - ``valid_success`` (the paper's measure: valid and the binary δ test) and ``success`` (the
      binary test before the validity filter);
    - ``mean_margin`` over valid images, and ``margin_shift``: its difference from the
      source-only arm's, with a seeded 95% bootstrap interval (when that arm ran).
    """
    arms: dict[str, dict] = {}
    present = sorted(dict.fromkeys(r.arm for r in records),
                     key=lambda arm: ARMS.index(arm) if arm in ARMS else len(ARMS))
    margins = {arm: [r.margin for r in records if r.arm == arm and not r.failed and r.valid]
               for arm in present}
    for arm in margins:
        mine = [r for r in records if r.arm == arm]
        rendered = [r for r in mine if not r.failed]
        valid = [r for r in rendered if r.valid]
        top1 = [r for r in valid if r.top1_success]
        row = {
            "images": len(mine), "failed_renders": len(mine) - len(rendered),
            "valid": len(valid),
            "contextual_top1": rate_summary(
                sum(r.kind == HEADLINE_KIND for r in top1), len(rendered)),
            "top1": rate_summary(len(top1), len(rendered)),
            "top1_by_kind": {kind: rate_summary(sum(r.kind == kind for r in top1),
                                                len(rendered)) for kind in KINDS},
            "valid_success": rate_summary(sum(r.success for r in valid), len(rendered)),
            "success": rate_summary(sum(r.success for r in rendered), len(rendered)),
            "kinds": {kind: sum(r.kind == kind for r in valid) for kind in KINDS},
            "mean_margin": (sum(margins[arm]) / len(margins[arm])) if margins[arm] else None,
        }
        if "source-only" in margins:
            row["margin_shift"] = bootstrap_mean_difference(margins[arm], margins["source-only"],
                                                            seed=seed)
        arms[arm] = row
    return arms


def write_summary(out_dir: Path, records: Sequence[AttackRecord]) -> Path:
    from neuronattack.attack.summary import render_summary

    meta = read_json(Path(out_dir) / "meta.json")
    path = Path(out_dir) / "summary.html"
    path.write_text(render_summary(meta, records, summarize(records), Path(out_dir)))
    return path

