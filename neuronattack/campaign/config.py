"""Campaign configs: one TOML file names every pair, seed, model and baseline of a campaign.

The whole file is checked before anything loads, and every problem is reported at once with its
line and a fix, because a campaign that dies on a typo an hour in (or on the 40th pair) wastes a
GPU night. Relative paths are relative to the working directory, as with the CLI flags.

Schema (only ``[model] clip`` and one key of ``[pairs]`` are required)::

    [run]
    out = "outputs/campaigns/NAME"    # the run folder [default: outputs/campaigns/<file name>]
    device = "auto"                   # auto, cpu, cuda, cuda:1; under `accelerate launch`, auto
                                      # gives each process its own GPU

    [model]
    clip = "ViT-B-32:openai"          # the attacked CLIP (same forms as `analyze --clip`)
    atlas = "outputs/atlas/NAME"      # [default: outputs/atlas/<clip>]; built when missing...
    images = "~/imagenet-5k"          # ...by analysing these images with the default settings

    [attack]
    n = 32                            # images per arm, for each pair and seed
    seeds = [0]                       # run seeds; each (pair, seed) is one unit of work
    arms = ["method", "random-neurons", "similar-words", "source-only"]   # method + baselines
    neurons = 100                     # neurons picked by |r·δ|
    words = 50                        # words kept per arm
    negative_prompt = "text, ..."     # "" for none (FLUX takes none) [default: against text]
    similarity_percentile = 99.0      # drop words more similar to the target than this
    class_filter = true               # drop words naming another judged class (false keeps
                                      # them, as `attack --keep-class-words`)
    block_list = "words.txt"          # words never to use: a file (one per line) or a list

    [generator]
    spec = "sd-turbo"                 # sd-turbo, sdxl-turbo, sd15, flux-schnell, tiny, repo, dir
    steps = 1                         # optional overrides of the preset: steps, guidance,
    guidance = 0.0                    # size (a multiple of 16, or [width, height]) and
    size = 512                        # batch_size (images rendered at once)
    batch_size = 8

    [writer]
    spec = "template"                 # template, template:PATH or hf:REPO_OR_PATH

    [judges]
    extra = ["ViT-L-14:openai"]       # more CLIPs that judge every image (transfer)
    checker = "auto"                  # validity: auto (another CLIP), clip:SPEC, toy or none
    classes = "imagenet"              # zero-shot classes: imagenet, cifar10, toy or a file

    [pairs]                           # exactly one of:
    list = [["tabby cat", "golden retriever"], ["airliner", "bald eagle"]]
    set = "cifar10-all"               # all 90 ordered CIFAR-10 pairs (or toy-all)
    classes = ["cat", "dog", "ship"]  # all ordered pairs among these classes
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from itertools import permutations
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from neuronattack import outdir, pipeline, validation
from neuronattack.attack.settings import (
    ARMS,
    DEFAULT_CHECKER,
    DEFAULT_CLASSES,
    DEFAULT_GENERATOR,
    DEFAULT_WRITER,
    AttackSettings,
    pair_name,
)
from neuronattack.attack.setup import (
    CIFAR10,
    checker_spec_problem,
    class_set_problem,
    load_class_names,
)
from neuronattack.errors import NeuronAttackError
from neuronattack.models.clip import clip_spec_problem
from neuronattack.models.generators import generator_spec_problem
from neuronattack.models.zeroshot import find_class
from neuronattack.neurons.analysis import SCHEMA as ANALYSIS_SCHEMA
from neuronattack.neurons.vocabulary import read_word_list
from neuronattack.writing import writer_spec_problem

# image_seeds() multiplies the run seed by 2**31 - 1; larger seeds would overflow int64 seeds.
MAX_RUN_SEED = 2**32 - 1
SIZE_MULTIPLE = 16
PAIR_KEYS = ("list", "set", "classes")


# Named pair sets: every ordered pair of these classes. Functions, so the toy world loads on use.
PAIR_SETS: dict[str, Callable[[], list[str]]] = {
    "cifar10-all": lambda: list(CIFAR10),
    "toy-all": lambda: load_class_names("toy"),
}


@dataclass(frozen=True)
class GeneratorChoice:
    """The generator spec and the preset settings the config overrides (None: the preset's)."""

    spec: str = DEFAULT_GENERATOR
    steps: int | None = None
    guidance: float | None = None
    size: int | tuple[int, int] | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class Campaign:
    """A validated campaign: what to attack, with which models, and where the run folder is."""

    text: str = field(repr=False)  # the TOML as written, copied into the run folder
    out: Path
    device: str
    clip: str
    atlas: Path | None
    images: Path | None
    attack: AttackSettings  # every unit's settings but its pair and seed
    seeds: tuple[int, ...]
    generator: GeneratorChoice
    writer: str
    judges: tuple[str, ...]
    checker: str
    classes: str
    class_names: tuple[str, ...] = field(repr=False)
    pairs: tuple[tuple[str, str], ...]  # canonical class names, in config order

    def settings(self, source: str, target: str, seed: int) -> AttackSettings:
        """One unit's settings: the campaign's, for this pair and run seed."""
        return replace(self.attack, source=source, target=target, seed=seed)

    def resolved(self) -> dict:
        """Everything that changes the images, JSON-ready: a run resumes only if this matches.

        The folder, device and the TOML's wording are left out: moving a run to another GPU or
        editing a comment must not orphan finished work.
        """
        names_hash = hashlib.sha256("\n".join(self.class_names).encode()).hexdigest()[:16]
        attack = self.attack
        # Recorded only when off, so runs started before the key existed still resume.
        unfiltered = {} if attack.class_filter else {"class_filter": False}
        return json.loads(json.dumps({
            "clip": self.clip, "atlas": None if self.atlas is None else str(self.atlas),
            "attack": {"n": attack.n, "seeds": self.seeds, "arms": attack.arms,
                       "neurons": attack.n_neurons, "words": attack.n_words,
                       "negative_prompt": attack.negative_prompt,
                       "similarity_percentile": attack.similarity_percentile,
                       "block_list": attack.block_list, **unfiltered},
            "generator": asdict(self.generator), "writer": self.writer, "judges": self.judges,
            "checker": self.checker, "classes": self.classes,
            "class_names_hash": names_hash,
            "pairs": self.pairs,
        }))


# ---------------------------------------------------------------------------------------------
# Where things are in the text: tomllib keeps no positions.

_TABLE = re.compile(r"^\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


class TomlLines:
    """Line numbers of tables and keys, found by scanning the text the way a reader would.

    Good enough for messages: multi-line strings that contain ``key =`` lines can mislead it,
    and then a message points at a nearby line rather than failing.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.starts: dict[tuple[str, str], int] = {}
        table = ""
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            if match := _TABLE.match(stripped):
                table = match[1]
                self.starts.setdefault((table, ""), number)
            elif match := _KEY.match(stripped):
                self.starts.setdefault((table, match[1].strip("\"'")), number)

    def of(self, table: str, key: str = "") -> int | None:
        """The key's line; for a key that is missing, its table's header line."""
        return self.starts.get((table, key)) or self.starts.get((table, ""))

    def of_value(self, table: str, key: str, pattern: str, nth: int = 0) -> int | None:
        """The line of the ``nth`` match of ``pattern`` inside the key's value (arrays may span
        lines), else the key's line."""
        start = self.starts.get((table, key))
        if start is None:
            return self.of(table)
        seen = 0
        for number in range(start, len(self.lines) + 1):
            line = self.lines[number - 1]
            if number > start and (_TABLE.match(line.strip()) or _KEY.match(line.strip())):
                break
            matches = len(re.findall(pattern, line.split("=", 1)[1] if number == start else line))
            if seen + matches > nth:
                return number
            seen += matches
        return start


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str
    table: str = ""  # where it is, so later checks can skip what depends on a broken value
    key: str = ""

    def render(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def quoted(name: str) -> str:
    """A pattern matching ``name`` as a TOML string, in either quote style."""
    return rf"""["']{re.escape(name)}["']"""


def shown(value: object) -> str:
    """A value as TOML would spell it, cut short: what the user wrote, recognisably."""
    text = json.dumps(value, ensure_ascii=False, default=str)  # TOML dates are no JSON
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------
# Value checks: each returns what is wrong ("must be ..."), or None.

Check = Callable[[object], str | None]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# The numbers and specs the CLI checks too, with the same words (neuronattack.validation).
positive_int = validation.positive_int
percentile = validation.percentile
non_negative = validation.non_negative
checker = checker_spec_problem
writer = writer_spec_problem
images_per_arm = validation.images_per_arm


def text(value: object) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


def any_text(value: object) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def boolean(value: object) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def text_list(value: object) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
    return None if ok else "must be a list of non-empty strings"


def seeds(value: object) -> str | None:
    if not (isinstance(value, list) and value
            and all(_is_int(v) and 0 <= v <= MAX_RUN_SEED for v in value)):
        return f"must be a non-empty list of integers from 0 to {MAX_RUN_SEED}"
    return "lists a seed twice" if len(set(value)) < len(value) else None


def arms(value: object) -> str | None:
    if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        return "must be a non-empty list of arm names"
    unknown = [v for v in value if v not in ARMS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], ARMS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"choose from {', '.join(ARMS)}"
        return f"names unknown arm {unknown[0]!r} ({hint})"
    return "lists an arm twice" if len(set(value)) < len(value) else None


def image_size(value: object) -> str | None:
    def fits(side: object) -> bool:
        return _is_int(side) and side > 0 and side % SIZE_MULTIPLE == 0

    ok = fits(value) or (isinstance(value, list) and len(value) == 2 and all(map(fits, value)))
    return None if ok else (f"must be a positive multiple of {SIZE_MULTIPLE}, or [width, height] "
                            "of such")


def block_list(value: object) -> str | None:
    if isinstance(value, list):
        return text_list(value)
    if isinstance(value, str) and Path(value).expanduser().is_file():
        return None
    return "must name an existing file of words (one per line) or be a list of words"


def clip_specs(value: object) -> str | None:
    if not isinstance(value, list):
        return "must be a list of CLIP specs"
    return next(filter(None, map(clip_spec_problem, value)), None) if value else None


def device(value: object) -> str | None:
    return text(value) or validation.device(value)


def generator(value: object) -> str | None:
    return text(value) or generator_spec_problem(value)


def clip(value: object) -> str | None:
    return text(value) or clip_spec_problem(value)


def class_set(value: object) -> str | None:
    return text(value) or class_set_problem(value)


def pair_list(value: object) -> str | None:
    ok = isinstance(value, list) and value and all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(n, str) for n in pair)
        for pair in value)
    return None if ok else "must be a non-empty list of [source, target] pairs of class names"


def pair_set(value: object) -> str | None:
    return None if value in PAIR_SETS else f"must be one of {', '.join(PAIR_SETS)}"


def class_names(value: object) -> str | None:
    ok = isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value)
    return None if ok else "must be a list of at least two class names"


@dataclass(frozen=True)
class Field:
    check: Check
    example: str  # a valid line, shown as the fix
    default: object = None
    required: bool = False


# [attack] key -> the AttackSettings field it sets ("seeds" gives each unit its field "seed").
ATTACK_FIELDS = {"n": "n", "arms": "arms", "neurons": "n_neurons", "words": "n_words",
                 "negative_prompt": "negative_prompt",
                 "similarity_percentile": "similarity_percentile",
                 "class_filter": "class_filter", "block_list": "block_list"}


def attack_default(key: str) -> object:
    """The default of an [attack] key (or of an AttackSettings field): the dataclass's, in TOML's
    terms (a tuple as a list)."""
    name = ATTACK_FIELDS.get(key, key)
    value = next(entry.default for entry in dataclass_fields(AttackSettings) if entry.name == name)
    return list(value) if isinstance(value, tuple) else value


SCHEMA: dict[str, dict[str, Field]] = {
    "run": {
        "out": Field(text, 'out = "outputs/campaigns/cifar10"'),
        "device": Field(device, 'device = "auto"', "auto"),
    },
    "model": {
        "clip": Field(clip, 'clip = "ViT-B-32:openai"', required=True),
        "atlas": Field(text, 'atlas = "outputs/atlas/ViT-B-32_openai"'),
        "images": Field(text, 'images = "~/imagenet-5k"'),
    },
    "attack": {
        "n": Field(images_per_arm, "n = 32", attack_default("n")),
        "seeds": Field(seeds, "seeds = [0, 1]", [attack_default("seed")]),
        "arms": Field(arms, f"arms = {json.dumps(list(ARMS))}", attack_default("arms")),
        "neurons": Field(positive_int, "neurons = 100", attack_default("neurons")),
        "words": Field(positive_int, "words = 50", attack_default("words")),
        "negative_prompt": Field(any_text, 'negative_prompt = "text, letters, words"',
                                 attack_default("negative_prompt")),
        "similarity_percentile": Field(percentile, "similarity_percentile = 99.0",
                                       attack_default("similarity_percentile")),
        "class_filter": Field(boolean, "class_filter = false", attack_default("class_filter")),
        "block_list": Field(block_list, 'block_list = "blocked-words.txt"',
                            attack_default("block_list")),
    },
    "generator": {
        "spec": Field(generator, 'spec = "sd-turbo"', DEFAULT_GENERATOR),
        "steps": Field(positive_int, "steps = 1"),
        "guidance": Field(non_negative, "guidance = 0.0"),
        "size": Field(image_size, "size = 512"),
        "batch_size": Field(positive_int, "batch_size = 8"),
    },
    "writer": {"spec": Field(writer, 'spec = "template"', DEFAULT_WRITER)},
    "judges": {
        "extra": Field(clip_specs, 'extra = ["ViT-L-14:openai"]', []),
        "checker": Field(checker, 'checker = "auto"', DEFAULT_CHECKER),
        "classes": Field(class_set, 'classes = "imagenet"', DEFAULT_CLASSES),
    },
    "pairs": {
        "list": Field(pair_list, 'list = [["cat", "dog"], ["dog", "cat"]]'),
        "set": Field(pair_set, 'set = "cifar10-all"'),
        "classes": Field(class_names, 'classes = ["cat", "dog", "ship"]'),
    },
}


def suggestion(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else f"; known: {', '.join(choices)}"


# ---------------------------------------------------------------------------------------------
# Validation


def check_structure(data: dict, lines: TomlLines) -> list[Problem]:
    """Unknown tables and keys, keys outside tables, missing required keys and pairs."""
    problems = []
    for table, body in data.items():
        if table in SCHEMA and isinstance(body, dict):
            problems += [Problem(lines.of(table, key), f"unknown key [{table}] {key}"
                                 f"{suggestion(key, list(SCHEMA[table]))}", table, key)
                         for key in body if key not in SCHEMA[table]]
        elif isinstance(body, dict):
            problems.append(Problem(lines.of(table), f"unknown table [{table}]"
                                    f"{suggestion(table, list(SCHEMA))}", table))
        else:
            homes = [name for name, fields in SCHEMA.items() if table in fields]
            hint = f"; it belongs under [{homes[0]}]" if homes else ""
            problems.append(Problem(lines.of("", table), f"{table} must sit in a table{hint}",
                                    homes[0] if homes else table, table))
    for table, fields in SCHEMA.items():
        body = data.get(table)
        for key, entry in fields.items():
            # A key written above every table is reported as such, not as missing too.
            if entry.required and key not in data and not (isinstance(body, dict)
                                                            and key in body):
                where = f"under [{table}]" if isinstance(body, dict) else f"a [{table}] table with"
                problems.append(Problem(lines.of(table), f"[{table}] {key} is required; add "
                                                         f"{where} {entry.example}", table, key))
    pairs = data.get("pairs")
    given = [key for key in PAIR_KEYS if isinstance(pairs, dict) and key in pairs]
    if len(given) != 1:
        what = "no pairs are given" if not given else f"give only one of {', '.join(given)}"
        problems.append(Problem(lines.of("pairs") if given else None,
                                f"[pairs]: {what}; use one of list, set or classes, e.g. "
                                f"[pairs] {SCHEMA['pairs']['set'].example}", "pairs"))
    return problems


def check_values(data: dict, lines: TomlLines) -> tuple[dict[str, dict], list[Problem]]:
    """Every known key's value checked, with defaults filled in for the keys left out."""
    values: dict[str, dict] = {}
    problems = []
    for table, fields in SCHEMA.items():
        body = data.get(table) if isinstance(data.get(table), dict) else {}
        values[table] = {}
        for key, entry in fields.items():
            if key not in body:
                values[table][key] = entry.default
                continue
            wrong = entry.check(body[key])
            if wrong:
                problems.append(Problem(lines.of(table, key),
                                        f"[{table}] {key} {wrong}, got {shown(body[key])}; "
                                        f"e.g. {entry.example}", table, key))
            values[table][key] = body[key]
    return values, problems


def resolve_pairs(pairs: dict, names: list[str], classes: str,
                  lines: TomlLines) -> tuple[list[tuple[str, str]], list[Problem]]:
    """Canonical (source, target) pairs in config order, or what is wrong with them."""
    key = next(key for key in PAIR_KEYS if pairs.get(key) is not None)
    value = pairs[key]
    if key == "set":
        wanted = PAIR_SETS[value]()
        missing = [name for name in wanted if name not in names]
        if missing:
            return [], [Problem(lines.of("pairs", "set"),
                                f"[pairs] set {value} needs classes that [judges] classes = "
                                f"{classes!r} lacks ({', '.join(missing[:3])}"
                                f"{', ...' if len(missing) > 3 else ''}); set [judges] "
                                f"classes = \"{value.removesuffix('-all')}\"")]
        return list(permutations(wanted, 2)), []
    problems = []
    flat = [name for pair in value for name in pair] if key == "list" else value
    canonical = {}
    for name in dict.fromkeys(flat):
        try:
            canonical[name] = find_class(name, names)
        except NeuronAttackError as error:
            problems.append(Problem(lines.of_value("pairs", key, quoted(name)),
                                    f"[pairs] {key}: {error}"))
    if key == "classes":
        chosen = [canonical[name] for name in value if name in canonical]
        for index, name in enumerate(chosen):
            if name in chosen[:index]:
                problems.append(Problem(lines.of_value("pairs", key, quoted(value[index]),
                                                   value[:index].count(value[index])),
                                        f"[pairs] classes lists {name!r} twice; remove one"))
        return list(permutations(dict.fromkeys(chosen), 2)), problems
    pairs, more = check_pair_list(value, canonical, lines)
    return pairs, problems + more


def check_pair_list(value: list[list[str]], canonical: dict[str, str],
                    lines: TomlLines) -> tuple[list[tuple[str, str]], list[Problem]]:
    """Explicit pairs: no class paired with itself, no pair twice, no two pairs in one folder."""
    pairs, problems = [], []
    written: Counter[tuple[str, str]] = Counter()  # how often each pair was spelled so far
    folders: dict[str, tuple[str, str]] = {}
    for source, target in value:
        if source not in canonical or target not in canonical:  # reported as unknown already
            continue
        pattern = rf"\[\s*{quoted(source)}\s*,\s*{quoted(target)}\s*\]"
        line = lines.of_value("pairs", "list", pattern, written[source, target])
        written[source, target] += 1
        pair = (canonical[source], canonical[target])
        folder = pair_name(*pair)
        if pair[0] == pair[1]:
            problems.append(Problem(line, f"[pairs] list pairs {pair[0]!r} with itself; source "
                                          "and target must differ"))
        elif folders.get(folder) == pair:
            problems.append(Problem(line, f"[pairs] list repeats {pair[0]} → {pair[1]}; "
                                          "remove one"))
        elif folder in folders:
            problems.append(Problem(line, f"[pairs] list: {pair[0]} → {pair[1]} and "
                                          f"{folders[folder][0]} → {folders[folder][1]} would "
                                          f"share the folder units/{folder}; keep one"))
        else:
            folders[folder] = pair
            pairs.append(pair)
    return pairs, problems


def check_atlas(model: dict, lines: TomlLines) -> list[Problem]:
    """A missing atlas is built from ``[model] images``, which must then exist; images are not
    needed (nor checked) once the atlas is there."""
    atlas, images = model["atlas"], model["images"]
    if atlas is None or (Path(atlas).expanduser() / "atlas.json").exists():
        return []  # without [model] atlas, the default folder is known once the CLIP is loaded
    if images is None:
        return [Problem(lines.of("model", "atlas"),
                        f"[model] atlas {atlas!r} holds no atlas (no atlas.json); build it with "
                        f"`neuronattack analyze --out {atlas}`, or add [model] images = \"DIR\" "
                        "to analyse before the campaign starts")]
    if not Path(images).expanduser().is_dir():
        return [Problem(lines.of("model", "images"),
                        f"[model] images must be an existing folder, got {shown(images)}: the "
                        f"atlas {atlas!r} does not exist yet and is built from these images")]
    try:  # the analysis will write there: the folder rule, checked now rather than after loading
        validation.writable_folder(Path(atlas).expanduser(), "[model] atlas")
        outdir.claim(Path(atlas).expanduser(), ANALYSIS_SCHEMA, option="[model] atlas")
    except NeuronAttackError as error:
        return [Problem(lines.of("model", "atlas"), str(error).rstrip("."))]
    return []


def toml_error(error: tomllib.TOMLDecodeError) -> str:
    """tomllib's message in our ``line N: ...`` form."""
    message = str(error)
    at = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    if not at:
        return f"invalid TOML: {message}; check the quotes, commas and brackets."
    return (f"line {at[1]}: invalid TOML, {message[:at.start()]} (column {at[2]}); check the "
            "quotes, commas and brackets there.")


def parse_campaign(source_text: str, name: str = "campaign.toml", out: Path | None = None,
                   device: str | None = None) -> Campaign:
    """A ``Campaign`` from TOML text, or one NeuronAttackError listing every problem.

    ``name`` is the file's name, used in messages and for the default run folder; ``out`` and
    ``device`` override ``[run]`` (the CLI's ``--out`` and ``--device``).
    """
    if device is not None:
        validation.require("--device", device, validation.device)
    try:
        data = tomllib.loads(source_text)
    except tomllib.TOMLDecodeError as error:
        raise NeuronAttackError(f"{name}: {toml_error(error)}") from None
    lines = TomlLines(source_text)
    problems = check_structure(data, lines)
    values, value_problems = check_values(data, lines)
    problems += value_problems
    broken = {p.table for p in problems} | {(p.table, p.key) for p in problems}
    names = [] if ("judges", "classes") in broken else load_class_names(
        values["judges"]["classes"])
    pairs: list[tuple[str, str]] = []
    # Each later check runs unless what it reads is broken, so a class typo is reported along
    # with an unrelated problem elsewhere, even in the same table.
    given = [key for key in PAIR_KEYS if values["pairs"].get(key) is not None]
    if names and len(given) == 1 and not {("pairs", ""), ("pairs", given[0])} & broken:
        pairs, more = resolve_pairs(values["pairs"], names, values["judges"]["classes"], lines)
        problems += more
    if not {("model", "atlas"), ("model", "images")} & broken:
        problems += check_atlas(values["model"], lines)
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise NeuronAttackError(f"{name} has {count}:\n" + "\n".join(
            f"  {problem.render()}" for problem in problems))
    return build_campaign(source_text, name, values, names, pairs, out, device)


def build_campaign(source_text: str, name: str, values: dict[str, dict], names: list[str],
                   pairs: list[tuple[str, str]], out: Path | None,
                   device: str | None) -> Campaign:
    run, model, attack = values["run"], values["model"], values["attack"]
    gen = values["generator"]
    blocked = attack["block_list"]
    if isinstance(blocked, str):
        blocked = read_word_list(Path(blocked).expanduser())
    size = gen["size"]
    given = {setting: attack[key] for key, setting in ATTACK_FIELDS.items()}
    # Each unit sets its own pair and seed (Campaign.settings).
    template = AttackSettings(source="", target="", **given | {
        "arms": tuple(attack["arms"]), "negative_prompt": attack["negative_prompt"] or None,
        "similarity_percentile": float(attack["similarity_percentile"]),
        "block_list": tuple(blocked)})

    def path(value: str | None) -> Path | None:
        return None if value is None else Path(value).expanduser()

    return Campaign(
        text=source_text,
        out=out or path(run["out"]) or pipeline.OUTPUTS / "campaigns" / Path(name).stem,
        device=device or run["device"], clip=model["clip"], atlas=path(model["atlas"]),
        images=path(model["images"]), attack=template, seeds=tuple(attack["seeds"]),
        generator=GeneratorChoice(
            spec=gen["spec"], steps=gen["steps"],
            guidance=None if gen["guidance"] is None else float(gen["guidance"]),
            size=tuple(size) if isinstance(size, list) else size, batch_size=gen["batch_size"]),
        writer=values["writer"]["spec"], judges=tuple(values["judges"]["extra"]),
        checker=values["judges"]["checker"], classes=values["judges"]["classes"],
        class_names=tuple(names), pairs=tuple(pairs),
    )


def load_campaign(path: Path, out: Path | None = None, device: str | None = None) -> Campaign:
    """Read and validate a campaign file; see :func:`parse_campaign`."""
    path = Path(path)
    if not path.is_file():
        raise NeuronAttackError(f"No campaign file at {path}; see prompts/campaigns/example.toml.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise NeuronAttackError(f"{path}: line {line}: not UTF-8 text (TOML files must be UTF-8); "
                                "save it as UTF-8 in your editor.") from None
    return parse_campaign(text, str(path), out, device)
