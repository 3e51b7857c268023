"""One attack image's record: what a line of ``results.jsonl`` holds, typed and schema-versioned.

A record is written once, as one JSON line, when its image has been rendered and judged; campaigns
merge, and export, report, summaries and ``explain`` read, these lines. Its pair and run seed are
fields (``source``, ``target``, ``run_seed``), never recovered from the id.

Formats read (lines carry no schema before ``neuronattack.record/1``; readers derive what they
lack, see :meth:`AttackRecord.from_json`):

- ids ``{pair}/{arm}/{index}``, no ``atlas`` and no ``run_seed`` (the first attacks);
- ids ``{pair}/s{seed}/{arm}/{index}`` with ``atlas`` and ``run_seed``, no ``top1_success``,
  ``margin`` or ``kind`` (before the top-1 headline);
- today's fields, and from ``neuronattack.record/1`` on, the ``schema`` key last.

A schema this version does not know (a newer neuronattack wrote it) is refused, not guessed at.
Importing this module loads no torch: the CLI and readers use it without the models.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from neuronattack.attack.settings import pair_name
from neuronattack.errors import NeuronAttackError

RESULTS = "results.jsonl"
RECORD_SCHEMA = "neuronattack.record/1"
_SCHEMA_FAMILY = "neuronattack.record/"

# Every format this project has written holds these; the rest are derived or default.
REQUIRED = ("id", "source", "target", "arm", "index", "prompt", "negative_prompt", "words",
            "neurons", "seed", "requested_seed", "retried", "failed", "failure", "generator",
            "model", "writer", "image", "scores", "success", "valid", "verdict")
_KNOWN = frozenset((*REQUIRED, "atlas", "run_seed", "top1_success", "margin", "kind", "schema"))


def record_id(pair: str, seed: int, arm: str, index: int) -> str:
    """Unique across pairs, run seeds, arms and images, so shards merge without collisions."""
    return f"{pair}/s{seed}/{arm}/{index:04d}"


@dataclass(frozen=True, kw_only=True)
class AttackRecord:
    """One image of an attack: its request, its render, and every judge's and the checker's
    verdicts. Failed renders are records too (no image, nothing judged)."""

    id: str  # record_id(pair, run_seed, arm, index): unique within a run
    source: str
    target: str
    arm: str
    index: int  # the image's place in its arm; image i of every arm shares its seed
    prompt: str
    negative_prompt: str | None = None
    words: tuple[str, ...] = ()  # the atlas words the sentence used
    neurons: tuple[str, ...] = ()  # their neurons, "layer.index", sorted
    seed: int  # the seed the image was drawn from (requested_seed + the retry offset)
    requested_seed: int | None = None
    retried: bool = False
    failed: bool = False
    failure: str | None = None  # why the render failed
    generator: dict = field(default_factory=dict)  # {"name", **the generator's settings}
    model: str = ""  # the attacked CLIP's spec; its judge's scores are scores[model]
    atlas: str | None = None  # content hash of the atlas (None: records from before it)
    writer: str = ""
    run_seed: int | None = None  # the attack's seed (None: records from before it)
    image: str | None = None  # relative to the run folder; None for a failed render
    scores: dict[str, dict] = field(default_factory=dict)  # judge spec -> Judgement.as_dict()
    success: bool = False  # the attacked model's binary test (target closer than source)
    top1_success: bool = False  # the attacked model's top-1 over the class set is the target
    margin: float | None = None  # the attacked model's target − source similarity
    valid: bool = False  # the checker's verdict
    kind: str | None = None  # contextual / typographic / distractor; None when unchecked
    verdict: dict | None = None  # the checker's Verdict.as_dict()
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as read

    @property
    def pair(self) -> str:
        return pair_name(self.source, self.target)

    @property
    def rendered(self) -> bool:
        return not self.failed and bool(self.image)

    def to_json(self) -> dict:
        """The JSON object of a results line, keys in the order records have always had them.

        A failed render has no ``top1_success``, ``margin`` or ``kind`` (nothing was judged).
        """
        data = {
            "id": self.id, "source": self.source, "target": self.target, "arm": self.arm,
            "index": self.index, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
            "words": list(self.words), "neurons": list(self.neurons), "seed": self.seed,
            "requested_seed": self.requested_seed, "retried": self.retried,
            "failed": self.failed, "failure": self.failure, "generator": self.generator,
            "model": self.model, "atlas": self.atlas, "writer": self.writer,
            "run_seed": self.run_seed, "image": self.image, "scores": self.scores,
            "success": self.success,
        }
        if not self.failed:
            data |= {"top1_success": self.top1_success, "margin": self.margin}
        data["valid"] = self.valid
        if not self.failed:
            data["kind"] = self.kind
        return data | {"verdict": self.verdict, **self.extra, "schema": RECORD_SCHEMA}

    def line(self) -> str:
        """The record as one line of ``results.jsonl``."""
        return json.dumps(self.to_json()) + "\n"

    @classmethod
    def from_json(cls, data: dict) -> AttackRecord:
        """A record from any format written so far (see the module docstring); what an old
        format lacks is derived from what it holds: ``top1_success`` from the attacked model's
        ``top1``, ``margin`` from its scores, ``kind`` from the checker's verdict."""
        if not isinstance(data, dict):
            raise NeuronAttackError(f"A results line holds {type(data).__name__}, not a record; "
                                    "restore the file from the attack that wrote it.")
        check_schema(data.get("schema"))
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise NeuronAttackError(
                f"Record {data.get('id', '(no id)')} lacks {', '.join(missing)}; restore the "
                "results file from the attack that wrote it."
            )
        main = (data["scores"] or {}).get(data["model"])
        failed = bool(data["failed"])
        top1 = (data["top1_success"] if "top1_success" in data
                else bool(main) and main.get("top1") == data["target"])
        margin = data.get("margin")
        if margin is None and main and not failed:
            margin = float(main["margin"])
        return cls(
            id=data["id"], source=data["source"], target=data["target"], arm=data["arm"],
            index=data["index"], prompt=data["prompt"], negative_prompt=data["negative_prompt"],
            words=tuple(data["words"]), neurons=tuple(data["neurons"]), seed=data["seed"],
            requested_seed=data["requested_seed"], retried=data["retried"], failed=failed,
            failure=data["failure"], generator=data["generator"], model=data["model"],
            atlas=data.get("atlas"), writer=data["writer"], run_seed=data.get("run_seed"),
            image=data["image"], scores=data["scores"], success=data["success"],
            top1_success=bool(top1), margin=margin, valid=data["valid"],
            kind=data.get("kind") or (data["verdict"] or {}).get("kind"),
            verdict=data["verdict"],
            extra={key: value for key, value in data.items() if key not in _KNOWN},
        )


def check_schema(schema: object) -> None:
    """No schema (records from before versioning) and ours are read; anything else is refused."""
    if schema is None or schema == RECORD_SCHEMA:
        return
    if isinstance(schema, str) and schema.startswith(_SCHEMA_FAMILY):
        raise NeuronAttackError(f"A record has schema {schema}, newer than this neuronattack "
                                f"reads ({RECORD_SCHEMA}); upgrade neuronattack to read it.")
    raise NeuronAttackError(f"A results line has schema {schema!r}, not an attack record's "
                            f"({RECORD_SCHEMA}); give the results file of an attack or campaign.")


def read_records(path: Path) -> list[AttackRecord]:
    """The complete records of a results file ([] when there is none); a line cut short by a
    crash is dropped (the attack redoes it), a record this version cannot read is an error."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        try:
            records.append(AttackRecord.from_json(data))
        except NeuronAttackError as error:
            raise NeuronAttackError(f"{path}, line {number}: {error}") from None
    return records


def append_record(path: Path, record: AttackRecord) -> None:
    """One JSON line written with a single write and fsynced, so a kill cannot half-write it."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(record.line())
        handle.flush()
        os.fsync(handle.fileno())
