"""A run published as a test set: Hugging Face imagefolder or WebDataset shards, with provenance.

Both formats hold the same images and the same flat metadata row per image (the columns are
listed in the dataset card), so a sample means the same thing whichever loader reads it.

imagefolder (``datasets.load_dataset("imagefolder", data_dir=OUT/SPLIT)``, or ``load_dataset(OUT)``
for every split at once through the card's ``configs``)::

    OUT/README.md                     dataset card: counts, columns, how it was made, caveats
    OUT/meta.json                     schema neuronattack.export/1: the run and the settings
    OUT/classes.json                  [{index, name, wnid, folder}]
    OUT/{split}/metadata.jsonl        one row per image, file_name relative to the split folder
    OUT/{split}/{folder}/{key}.png    folder: the source class (its WordNet ID for ImageNet)

webdataset::

    OUT/README.md, OUT/meta.json, OUT/classes.json
    OUT/{split}-{shard:06d}.tar       {key}.png, {key}.json (the row), {key}.cls (the label)

Splits are outcomes (``fooled_valid``, ``fooled_filtered``, ``not_fooled_valid``,
``not_fooled_filtered``) or pairs (``tabby_cat_to_golden_retriever``); the other grouping is a
column either way. Failed renders have no image: they are counted in the card, not exported.

The label is the *source* class: an adversarial image shows the source, and a classifier that
answers the target has been fooled. Every arm is exported (the baselines give the reference rates),
each row saying which.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import neuronattack
from neuronattack import outdir, validation
from neuronattack.artifacts import new_file_mode, read_json, versions, write_json
from neuronattack.attack.records import RESULTS, AttackRecord, read_records
from neuronattack.attack.settings import ARMS
from neuronattack.attack.setup import class_set_names, load_class_names
from neuronattack.campaign.runner import Unit
from neuronattack.errors import NeuronAttackError
from neuronattack.models.zeroshot import imagenet_classes

SCHEMA = "neuronattack.export/1"
FORMATS = ("imagefolder", "webdataset")
SPLIT_BY = ("outcome", "pair")
OUTCOMES = ("fooled_valid", "fooled_filtered", "not_fooled_valid", "not_fooled_filtered")
FAILED = "failed"


@dataclass(frozen=True)
class Run:
    """A run folder read once: the records and the meta of every attack that made them."""

    base: Path  # record image paths are relative to it
    meta: dict  # base/meta.json: the attack's or the campaign's
    units: dict[str, dict]  # attack folder relative to base ("." for a single attack) -> meta
    records: list[AttackRecord]  # one per image, failed renders included, ids unique

    @property
    def campaign(self) -> bool:
        return "." not in self.units

    def unit_of(self, record: AttackRecord) -> str:
        """The attack folder that made a record: where its ``selection-*.json`` are."""
        if not self.campaign:
            return "."
        return Unit(record.source, record.target, record.run_seed).folder


def load_run(path: Path) -> Run:
    """A single attack folder (``run_attack`` output) or a campaign folder (``units/*/s*``)."""
    base = Path(path)
    if not (base / "meta.json").is_file() or not (base / RESULTS).is_file():
        raise NeuronAttackError(
            f"{base} is not a run folder (it needs meta.json and {RESULTS}); give the output "
            "folder of an attack or a campaign."
        )
    meta = read_json(base / "meta.json", expect=dict)
    unit_metas = sorted((base / "units").glob("*/s*/meta.json"))
    units = ({str(p.parent.relative_to(base)): read_json(p, expect=dict) for p in unit_metas}
             if unit_metas else {".": meta})
    # Results are append-only: a record written again (a merge redone) supersedes the earlier one.
    records = list({record.id: record for record in read_records(base / RESULTS)}.values())
    if not records:
        raise NeuronAttackError(f"{base / RESULTS} holds no records yet; run the attack first.")
    return Run(base, meta, units, records)


def outcome_of(record: AttackRecord) -> str:
    """Fooled means the attacked model's top-1 over the class set is the target; valid, the
    checker's verdict."""
    if not record.rendered:
        return FAILED
    fooled = "fooled" if record.top1_success else "not_fooled"
    return f"{fooled}_{'valid' if record.valid else 'filtered'}"


def pair_split(pair: str) -> str:
    """A pair as a split name; Hugging Face split names allow only word characters and dots."""
    return pair.replace("-", "_to_")


def sample_key(record: AttackRecord) -> str:
    """The record id as a file stem: no ``/`` (folders) and no ``.`` (WebDataset's separator)."""
    return re.sub(r"[^\w-]+", "-", record.id)


@dataclass(frozen=True)
class ClassEntry:
    index: int  # position in the judged class set (ImageNet's index); see class_table
    name: str
    wnid: str | None  # WordNet ID, ImageNet only
    folder: str  # the imagefolder label folder


@dataclass(frozen=True)
class ClassTable:
    class_set: str  # a named class set (attack.setup.class_set_names), or "custom"
    entries: dict[str, ClassEntry]  # by name, in index order: every source and target

    def __getitem__(self, name: str) -> ClassEntry:
        return self.entries[name]


def identify_class_set(names: set[str], sizes: set[int]) -> tuple[str, list[str] | None]:
    """The known class set holding every name (and of the recorded size), else ``custom``."""
    # A run records only the class set's size, so the named sets are recognised by their names.
    for spec in class_set_names():
        full = load_class_names(spec)
        if names <= set(full) and sizes <= {len(full)}:
            return spec, full
    return "custom", None


def class_table(records: Sequence[AttackRecord], metas: Iterable[dict]) -> ClassTable:
    """Every source and target with its class-set index, WordNet ID and folder.

    Indices are positions in the judged class set, so an ImageNet classifier's argmax compares
    with the label directly. A name listed twice (ImageNet's two "missile") takes its first
    index, as the attack did when it resolved the pair. For a custom class set the run does not
    record the full list, so indices number the names used, sorted.
    """
    names = {r.source for r in records} | {r.target for r in records}
    sizes = {m["classes"] for m in metas if isinstance(m.get("classes"), int)}
    class_set, full = identify_class_set(names, sizes)
    order = sorted(names) if full is None else full
    index = {name: order.index(name) for name in names}
    wnids = ({c.index: c.wnid for c in imagenet_classes()} if class_set == "imagenet" else {})
    ordered = sorted(names, key=index.__getitem__)
    wanted = [wnids.get(index[name]) or _folder_slug(name) for name in ordered]
    taken = Counter(wanted)
    entries = {
        name: ClassEntry(index[name], name, wnids.get(index[name]),
                         folder if taken[folder] == 1 else f"{folder}_{index[name]}")
        for name, folder in zip(ordered, wanted, strict=True)
    }
    return ClassTable(class_set, entries)


def _folder_slug(name: str) -> str:
    # Spaces as "_" is how resolve_class_names reads folder names back into class names.
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "class"


def dataset_row(record: AttackRecord, classes: ClassTable) -> dict:
    """The flat metadata of one rendered image.

    Every value is a string, number or bool and never null where a type is known (absent strings
    are ""): ``datasets`` infers a schema per metadata file and refuses files whose schemas differ,
    which a column that happens to be all-null or all-empty-list in one split would cause. Lists
    and mappings are JSON strings for the same reason.
    """
    generator, verdict = record.generator, record.verdict
    scores = record.scores[record.model]  # the attacked model's own judgement
    width, height = generator.get("size") or (None, None)
    return {
        "id": record.id, "label": classes[record.source].index,
        "source": record.source, "target": record.target,
        "target_label": classes[record.target].index, "pair": record.pair,
        "outcome": outcome_of(record), "arm": record.arm, "index": record.index,
        "run_seed": record.run_seed,
        "fooled": record.top1_success, "binary": bool(record.success),
        "kind": record.kind or "", "valid": bool(record.valid),
        "recognisable": bool(verdict.get("recognisable", verdict["source_present"])),
        "source_present": bool(verdict["source_present"]),
        "target_absent": bool(verdict["target_absent"]), "no_text": bool(verdict["no_text"]),
        "checker": verdict["checker"],
        "margin": float(scores["margin"]),
        "source_similarity": float(scores["source_similarity"]),
        "target_similarity": float(scores["target_similarity"]),
        "p_source": float(scores["p_source"]), "p_target": float(scores["p_target"]),
        "top1": scores["top1"], "top5": json.dumps(scores["top5"]),
        # DiffusionDB's generation fields, under our names.
        "prompt": record.prompt, "negative_prompt": record.negative_prompt or "",
        "seed": record.seed, "requested_seed": record.requested_seed,
        "retried": bool(record.retried), "steps": generator.get("steps"),
        "guidance": _float_or_none(generator.get("guidance")), "width": width, "height": height,
        "scheduler": generator.get("scheduler") or "", "generator": generator["name"],
        "generator_model": str(generator.get("model") or ""),
        "generator_revision": generator.get("revision") or "",
        "dtype": generator.get("dtype") or "", "meaningless": bool(generator.get("meaningless")),
        "generator_settings": json.dumps(generator, sort_keys=True),
        "model": record.model, "atlas": record.atlas, "writer": record.writer,
        "words": json.dumps(list(record.words)), "neurons": json.dumps(list(record.neurons)),
        "scores": json.dumps(record.scores),
    }


def _float_or_none(value) -> float | None:
    # guidance 1 and 1.0 must not make an int column in one split and a float one in another.
    return None if value is None else float(value)


@dataclass(frozen=True)
class Sample:
    split: str
    key: str
    folder: str  # label folder (imagefolder)
    image: Path
    row: dict


def collect_samples(run: Run, classes: ClassTable, split_by: str) -> list[Sample]:
    """Every rendered image of the run, in record order, with its split and metadata row.

    An image path must stay inside the run folder: a results file that names ``/etc/passwd`` or
    ``../notes.txt`` (edited by hand, or written by another tool) must not publish that file.
    """
    samples = []
    inside = run.base.resolve()
    for record in run.records:
        if not record.rendered:
            continue
        image = (run.base / record.image).resolve()
        if not image.is_relative_to(inside) or image.suffix.lower() != ".png":
            raise NeuronAttackError(
                f"{run.base / RESULTS} names the image {record.image!r} (record "
                f"{record.id}), which is not a PNG inside the run folder; only the run's own "
                "images are exported; restore its results file from the attack."
            )
        split = outcome_of(record) if split_by == "outcome" else pair_split(record.pair)
        samples.append(Sample(split, sample_key(record), classes[record.source].folder,
                              run.base / record.image, dataset_row(record, classes)))
    missing = [str(s.image) for s in samples if not s.image.is_file()]
    if missing:
        raise NeuronAttackError(
            f"{len(missing)} images named in {run.base / RESULTS} are missing (e.g. {missing[0]});"
            " rerun the attack to redo them or restore the files."
        )
    return samples


def split_counts(samples: Sequence[Sample], split_by: str) -> dict[str, int]:
    """Images per split, outcomes in a fixed order, pairs in run order; empty splits left out."""
    counts = Counter(sample.split for sample in samples)
    order = OUTCOMES if split_by == "outcome" else dict.fromkeys(s.split for s in samples)
    return {split: counts[split] for split in order if counts[split]}


def write_imagefolder(root: Path, samples: Sequence[Sample]) -> None:
    """Images copied (a symlink would break when the folder is moved or uploaded) + metadata."""
    rows: dict[str, list[str]] = {}
    for sample in samples:
        folder = root / sample.split / sample.folder
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample.image, folder / f"{sample.key}.png")
        row = {"file_name": f"{sample.folder}/{sample.key}.png", **sample.row}
        rows.setdefault(sample.split, []).append(json.dumps(row, ensure_ascii=False))
    for split, lines in rows.items():
        (root / split / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_webdataset(root: Path, samples: Sequence[Sample], shard_size: int) -> None:
    """``{split}-{shard:06d}.tar`` shards of at most ``shard_size`` samples, byte-reproducible."""
    import webdataset

    by_split: dict[str, list[Sample]] = {}
    for sample in samples:
        by_split.setdefault(sample.split, []).append(sample)
    for split, mine in by_split.items():
        # ShardWriter fills the shard number in with "%"; a "%" in the folder must survive it.
        pattern = str(root).replace("%", "%%") + f"/{split}-%06d.tar"
        # A fixed mtime makes a rerun write the same bytes; encoder=False: we give bytes.
        with webdataset.ShardWriter(pattern, maxcount=shard_size, verbose=0, encoder=False,
                                    mtime=0) as writer:
            for sample in mine:
                writer.write({
                    "__key__": sample.key, "png": sample.image.read_bytes(),
                    "json": json.dumps(sample.row, ensure_ascii=False).encode("utf-8"),
                    "cls": str(sample.row["label"]).encode(),
                })


@dataclass(frozen=True)
class ExportResult:
    out: Path
    format: str
    split_by: str
    splits: dict[str, int]  # images per split
    failed: int  # failed renders: no image, not exported

    def as_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}


def export_run(run_path: Path, out: Path, format: str = "imagefolder", split_by: str = "outcome",
               shard_size: int = 1000, overwrite: bool = False) -> ExportResult:
    """Write the run's images as a dataset in ``out``, whole or not at all.

    The dataset is built in a temporary folder beside ``out`` and renamed into place, so a crash
    never leaves half a dataset; an existing non-empty ``out`` is replaced only with
    ``overwrite``. The same run exports to the same bytes.
    """
    if format not in FORMATS:
        raise NeuronAttackError(f"Unknown format {format!r}; choose {' or '.join(FORMATS)}.")
    if split_by not in SPLIT_BY:
        raise NeuronAttackError(f"Unknown split {split_by!r}; choose {' or '.join(SPLIT_BY)}.")
    if shard_size < 1:
        raise NeuronAttackError(f"The shard size must be at least 1 sample, not {shard_size}.")
    run = load_run(run_path)
    out = Path(out)
    check_out(out, run.base, overwrite)
    classes = class_table(run.records, run.units.values())
    samples = collect_samples(run, classes, split_by)
    if not samples:
        raise NeuronAttackError(f"Every render in {run.base} failed: there is no image to export.")
    splits = split_counts(samples, split_by)
    failed = sum(not record.rendered for record in run.records)
    with staged(out) as staging:
        if format == "imagefolder":
            write_imagefolder(staging, samples)
        else:
            write_webdataset(staging, samples, shard_size)
        # No timestamp or absolute path: the same run exports to the same bytes anywhere.
        write_json(staging / outdir.MARKER, {
            "schema": SCHEMA, "format": format, "split_by": split_by, "splits": splits,
            "failed": failed, "run_schema": run.meta.get("schema"),
            "versions": {"neuronattack": versions()["neuronattack"]}})
        write_json(staging / "classes.json", [asdict(e) for e in classes.entries.values()])
        shards = sorted(p.name for p in staging.glob("*.tar"))
        (staging / "README.md").write_text(
            dataset_card(run, classes, format, split_by, splits, shards), encoding="utf-8")
    return ExportResult(out, format, split_by, splits, failed)


def is_export(folder: Path) -> bool:
    """Our export: its meta.json says so, or (exports made before it had one) its card does."""
    if outdir.is_ours(folder, SCHEMA):
        return True
    card = folder / "README.md"
    try:
        head = card.read_text(encoding="utf-8")[:400] if card.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return False
    return (folder / "classes.json").is_file() and "pretty_name: neuronattack" in head


def check_out(out: Path, base: Path, overwrite: bool) -> None:
    """Refuse before any work: a folder holding the run itself, someone else's files, or an
    export of ours without ``overwrite``. Only our own exports are ever replaced (deleted)."""
    target, run = out.resolve(), base.resolve()
    if target == run or run.is_relative_to(target):
        raise NeuronAttackError(f"{out} holds the run itself; export to another folder.")
    validation.writable_folder(out)
    if not outdir.foreign_entries(out):
        return
    if not is_export(out):
        raise NeuronAttackError(
            f"{out} is not empty and is not a neuronattack export, so --overwrite will not "
            "delete it; choose a new or empty folder."
        )
    if not overwrite:
        raise NeuronAttackError(
            f"{out} holds an export; pass --overwrite to replace it or choose another folder."
        )


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` that replaces it when the block ends without error."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    # mkdtemp's 0700 would hide a dataset meant to be shared: a folder's usual mode instead
    staging.chmod(new_file_mode() | ((new_file_mode() & 0o444) >> 2))
    try:
        yield staging
        if out.exists():
            # rename(2) replaces an empty folder only: move the old one aside, then delete it.
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def distinct(values: Iterable) -> list:
    """Values in first-seen order without repeats (settings shared by most records)."""
    return list(dict.fromkeys(value for value in values if value not in (None, "")))


def describe_generator(settings: dict) -> str:
    """One line: the DiffusionDB-style fields a reader needs to reproduce an image."""
    model = str(settings.get("model") or settings["name"])
    if settings.get("revision"):
        model += f"@{settings['revision']}"
    parts = [f"{settings['name']} ({model})" if model != settings["name"] else model]
    if settings.get("steps") is not None:
        parts.append(f"{settings['steps']} steps")
    if settings.get("guidance") is not None:
        parts.append(f"guidance {settings['guidance']:g}")
    if settings.get("size"):
        parts.append("{}x{}".format(*settings["size"]))
    parts += [str(settings[key]) for key in ("scheduler", "dtype") if settings.get(key)]
    return ", ".join(parts)


def provenance(run: Run) -> dict[str, list[str]]:
    """What made the images, each setting's distinct values (a campaign may vary some)."""
    records, metas = run.records, list(run.units.values())
    settings = [meta.get("settings", {}) for meta in metas]
    return {
        "attacked model": distinct(r.model for r in records),
        "judges": distinct(judge for r in records for judge in r.scores),
        "validity checker": distinct([*(r.verdict["checker"] for r in records if r.verdict),
                                      *(meta.get("checker") for meta in metas)]),
        "generator": distinct(describe_generator(r.generator) for r in records),
        "sentence writer": distinct(r.writer for r in records),
        "atlas (hash)": distinct(r.atlas for r in records),
        "negative prompt": distinct(r.negative_prompt for r in records),
        "images per arm": distinct(str(s["n"]) for s in settings if "n" in s),
        "neurons / words per arm": distinct(f"{s['n_neurons']} / {s['n_words']}"
                                            for s in settings if "n_neurons" in s),
        "run seeds": distinct(str(r.run_seed) for r in records),
        "neuronattack version": distinct(meta.get("versions", {}).get("neuronattack")
                                         for meta in [run.meta, *metas]),
    }


def meaningless(run: Run) -> bool:
    """True when any image came from a generator with random weights (the tiny preset)."""
    return any(record.generator.get("meaningless") for record in run.records)


def arm_rank(arm: str) -> int:
    """The method first, then the baselines in their usual order, unknown arms last."""
    return ARMS.index(arm) if arm in ARMS else len(ARMS)


def outcome_table(records: Sequence[AttackRecord]) -> dict[tuple[str, str], Counter]:
    """``(pair, arm) -> Counter(outcome)``, failed renders included; pairs in run order."""
    table: dict[tuple[str, str], Counter] = {}
    for record in records:
        table.setdefault((record.pair, record.arm), Counter())[outcome_of(record)] += 1
    pair_rank = {pair: i for i, pair in enumerate(distinct(r.pair for r in records))}
    return dict(sorted(table.items(), key=lambda item: (pair_rank[item[0][0]],
                                                        arm_rank(item[0][1]))))


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def _brace(shards: Sequence[str], split: str) -> str:
    """A split's shards in WebDataset's brace notation (``a-{000000..000002}.tar``)."""
    last = sum(name.rsplit("-", 1)[0] == split for name in shards) - 1
    return f"{split}-000000.tar" if last <= 0 else f"{split}-{{000000..{last:06d}}}.tar"


# Markdown's punctuation; "_" only where it could open or close emphasis (not in fooled_valid).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*{}\[\]<>()#+!|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _cell(text: object) -> str:
    """A user string (a class name, a prompt) as literal Markdown text: in a table cell or a
    sentence it must not turn into a link, emphasis, HTML or a new row."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _code(text: object) -> str:
    """A user string as a Markdown code span: backslashes show there, so instead of escaping,
    the fence is one backtick longer than any run of backticks inside."""
    text = " ".join(str(text).split()).replace("|", "\\|")  # a "|" would still split a row
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _card_yaml(format: str, splits: dict[str, int], total: int) -> str:
    # JSON strings are valid YAML scalars: no YAML library needed to quote names safely.
    pattern = "{}/**" if format == "imagefolder" else "{}-*.tar"
    lines = ["---", "pretty_name: neuronattack semantic adversarial images", "license: other",
             "license_name: generator-license", "task_categories:", "- image-classification",
             "tags:", "- adversarial", "- clip", "- robustness", "- synthetic",
             "size_categories:", f"- {_size_category(total)}", "configs:",
             "- config_name: default", "  data_files:"]
    for split in splits:
        lines += [f"  - split: {split}", f"    path: {json.dumps(pattern.format(split))}"]
    return "\n".join([*lines, "---"])


COLUMNS = (
    ("label", "source class index (classes.json): the ground truth, what the image shows"),
    ("source, target", "class names; target_label is the target's index"),
    ("pair, outcome, arm", "the class pair, fooled/valid outcome, and the arm: `method` is the "
     "attack, the others are baselines with the same budget and seeds"),
    ("fooled, binary", "fooled: the attacked model's top-1 over the class set is the target; "
     "binary: its binary test put the image closer to the target than the source (the paper's)"),
    ("kind", "contextual (only the source object drawn), typographic (text or a sign) or "
     "distractor (another class's object); empty when no checker ran (docs/success.md)"),
    ("recognisable", "the checker's verdict that the source is still recognisable"),
    ("valid, source_present, target_absent, no_text, checker",
     "the automatic validity verdict (source present and recognisable, target absent) and its "
     "checks; no_text false makes an image typographic, not invalid"),
    ("margin, source_similarity, target_similarity, p_source, p_target, top1, top5",
     "the attacked model's zero-shot scores (top5 is a JSON list)"),
    ("scores", "JSON: every judge model's scores, keyed by model spec (transfer)"),
    ("prompt, negative_prompt, seed, requested_seed, retried",
     "the generation request; seed differs from requested_seed after a retry"),
    ("steps, guidance, width, height, scheduler, dtype, generator, generator_model, "
     "generator_revision, meaningless, generator_settings", "the generator (settings as JSON)"),
    ("model, atlas, writer", "the attacked CLIP spec, the atlas hash, the sentence writer"),
    ("words, neurons", "JSON lists: the atlas words the sentence used and their neurons "
     "(layer.index)"),
    ("id, index, run_seed", "the record id in the run's results.jsonl"),
)


def dataset_card(run: Run, classes: ClassTable, format: str, split_by: str,
                 splits: dict[str, int], shards: Sequence[str]) -> str:
    """README.md: YAML for the Hugging Face loader, then counts, columns, provenance, caveats.

    No timestamps, so the same run gives the same card (exports are reproducible).
    """
    total, failed = sum(splits.values()), sum(not r.rendered for r in run.records)
    names = {r.pair: f"{_cell(r.source)} → {_cell(r.target)}" for r in run.records}
    lines = [_card_yaml(format, splits, total), "", "# neuronattack semantic adversarial images",
             ""]
    if meaningless(run):
        lines += ["> **Warning: these images are noise.** The generator had random weights (the "
                  "`tiny` preset); the images only show that the pipeline runs and must not be "
                  "used to measure anything.", ""]
    lines += [
        "Images of a *source* class written and rendered so that CLIP takes them for a *target* "
        f"class, made with neuronattack from "
        f"{len(names)} class pair{'s' if len(names) != 1 else ''}: "
        + "; ".join(names.values()) + ".",
        "",
        "The **label is the source class**: the image shows the source, so it is the ground "
        "truth, and a classifier that answers the target (`target_label`) has been fooled. "
        f"Class set: `{classes.class_set}`; `classes.json` lists every source and target with "
        "its index in that set, its WordNet ID (ImageNet only, else null) and its folder.",
        "", "## Loading", "", "```python",
    ]
    first = next(iter(splits), "SPLIT")
    if format == "imagefolder":
        lines += ["from datasets import load_dataset",
                  "everything = load_dataset(\"path/to/this/folder\")  # the splits below",
                  f"one = load_dataset(\"imagefolder\", data_dir=\"path/to/this/folder/{first}\","
                  " split=\"train\")"]
    else:
        lines += ["import webdataset as wds",
                  f"urls = \"path/to/this/folder/{_brace(shards, first)}\"",
                  "dataset = wds.WebDataset(urls, shardshuffle=False).decode(\"pil\")",
                  "# each sample: png (the image), json (the row below), cls (the label)"]
    lines += ["```", "", f"## Splits (by {split_by})", "", "| split | images |", "|---|---:|"]
    lines += [f"| {_cell(split)} | {count} |" for split, count in splits.items()]
    lines += ["", f"{total} images in all; {failed} failed render{'s' if failed != 1 else ''} "
              "(no image) not exported.", "", "## Images per pair and arm", "",
              "| pair | arm | " + " | ".join((*OUTCOMES, FAILED)) + " |",
              "|---|---|" + "---:|" * (len(OUTCOMES) + 1)]
    for (pair, arm), counts in outcome_table(run.records).items():
        lines.append(f"| {names[pair]} | {_cell(arm)} | "
                     + " | ".join(str(counts[o]) for o in (*OUTCOMES, FAILED)) + " |")
    lines += ["", "## Columns", "", "Each image's metadata (`metadata.jsonl` rows, or the "
              "`.json` of a WebDataset sample). Absent strings are empty, never null.", ""]
    lines += [f"- `{'`, `'.join(c.strip() for c in cols.split(','))}`: {text}"
              for cols, text in COLUMNS]
    made = provenance(run)
    unchecked = made["validity checker"] == ["none"]
    lines += ["", "## How it was made", "",
              "Neurons of the attacked CLIP whose directions push from the source toward the "
              "target were read from an atlas of their word decompositions; their words that are "
              "unrelated to the target were written into sentences showing the source, rendered, "
              "and judged. "
              + ("No validity checker ran: every image counts as valid." if unchecked else
                 "A second model checked validity: the source among its top 5, the target not "
                 "winning its binary test, no rendered text."), ""]
    lines += [f"- {label}: {', '.join(_code(v) for v in values)}"
              for label, values in made.items() if values]
    lines += [f"- exported by neuronattack {neuronattack.__version__} as {format}", "",
              "## Licence", "",
              "The images are generated: the licence of the generator model named above applies "
              "to them (and its terms of use to their use). The metadata is MIT like neuronattack.",
              "", "## Caveats", "",
              "- Nobody looked at these images: `valid` is an automatic verdict"
              + (" (here none: no checker ran)." if unchecked else
                 ", so some valid images may not show the source; the checker also rejects "
                 "images whose attack transfers to it, which makes it conservative."),
              "- `fooled` is the attacked model's top-1 over the whole class set; `binary` is the "
              "paper's source-vs-target test, which also counts images the model calls neither.",
              "- `kind` tells contextual successes (the shortcut the product looks for) from "
              "typographic and distractor ones; with real models it is the checker's estimate.",
              "- Rates depend on the judge set and seeds; compare the method with the baselines "
              "of the same pair, which had the same budget and seeds."]
    if meaningless(run):
        lines.append("- The generator had random weights: every number here is meaningless.")
    return "\n".join(lines) + "\n"
