"""Causal cue discovery: which words made the successful images succeed.

For every successful image of a run (valid, and the attacked CLIP's top-1 is the target), each of
its words is removed from its sentence (the rest unchanged, see :func:`without_word`), the image
is rendered again with the same seed and judged by the same CLIP. The *effect* of the word on that
image is the margin drop (target − source similarity, before minus after); the word was
*necessary* when, without it, the top-1 is no longer the target.

Per pair, the words are ranked into *discovered cues* by their effect per success (the margin drop
averaged over all the pair's successful images, 0 where the word was not used), with a seeded 95%
bootstrap interval over those images, how many of them used the word, how often it was necessary
and its mean effect where it was used.

With the toy renderer the counterfactual is exact: the same seed draws the same scene minus the
word. With a diffusion model the same seed without the word can change the whole layout, so one
image's drop mixes the word's effect with a redraw; the interval is taken over images (each its
own seed and layout), so that redraw noise widens it instead of hiding in it (docs/cues.md).

Output in the run folder: ``cues.json`` (schema ``neuronattack.cues/1``) and ``explain.jsonl``
(one line per counterfactual image). While it runs, each finished batch of counterfactuals is
appended to ``explain.jsonl.partial``; an interrupted run started again with the same records,
generator and judge takes those batches as they are and renders only the rest. Batches are cut at
the same places either way (a render's last bits depend on its batch-mates), so a resumed run
writes the same files as one that was never interrupted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from neuronattack.artifacts import json_digest, versions, write_json, write_text
from neuronattack.attack.judge import Judge
from neuronattack.attack.records import RESULTS, AttackRecord, read_records
from neuronattack.attack.run import write_summary
from neuronattack.attack.stats import bootstrap_mean
from neuronattack.errors import NeuronAttackError
from neuronattack.models.plugins import clip_plugin, find_plugin
from neuronattack.progress import progress_bar, stderr_console

SCHEMA = "neuronattack.cues/1"
CUES = "cues.json"
COUNTERFACTUALS = "explain.jsonl"
JOURNAL = COUNTERFACTUALS + ".partial"  # finished batches of an unfinished run
RENDER_BATCH = 64
TOP_CUES = 3  # a planted cue counts as discovered when it is among its pair's first three
ARTICLES = ("a", "an", "the")
# After these, an article before the removed word governs nothing and goes with it.
CONNECTIVES = frozenset(("and", "with", "on", "in", "at", "under", "beside", "near", "next", "to",
                         "below", "above", "of", "by", "behind"))


def without_word(prompt: str, word: str) -> str:
    """``prompt`` with every whole-word occurrence of ``word`` (a word or phrase) removed.

    An article right before it goes too when nothing follows that it could govern ("a cat with a
    ball" without "ball" is "a cat with"; "a red cat" without "red" is "a cat"); spaces and commas
    left behind are tidied.
    """
    phrase = r"\s+".join(re.escape(part) for part in word.split())
    pattern = re.compile(rf"(?:\b(?P<article>{'|'.join(ARTICLES)})\s+)?\b{phrase}\b"
                         r"(?P<after>\s*(?P<next>[A-Za-z]+)?)", re.IGNORECASE)

    def replace(match: re.Match) -> str:
        following = (match.group("next") or "").lower()
        keep_article = match.group("article") and following and following not in CONNECTIVES
        return (f"{match.group('article')} " if keep_article else "") + match.group("after")

    text = pattern.sub(replace, prompt)
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r",\s*,+", ",", text)
    return re.sub(r"\s{2,}", " ", text).strip(" ,")


def successes(records: Sequence[AttackRecord]) -> list[AttackRecord]:
    """The images to explain: rendered, valid, and the attacked CLIP's top-1 is the target."""
    return [r for r in records if not r.failed and r.valid and r.top1_success]


Job = tuple[AttackRecord, str, str]  # (successful image, word removed, sentence without it)


def counterfactual_jobs(records: Sequence[AttackRecord]) -> list[Job]:
    """One job per (successful image, word), in record order; words the sentence does not spell
    out are skipped."""
    jobs = []
    for record in successes(records):
        for word in record.words:
            prompt = without_word(record.prompt, word)
            if prompt != record.prompt:
                jobs.append((record, word, prompt))
    return jobs


def counterfactuals(records: Sequence[AttackRecord], generator, judge: Judge,
                    batch: int = RENDER_BATCH, show_progress: bool = True,
                    done: dict[int, list[dict]] | None = None,
                    on_batch: Callable[[int, list[dict]], None] | None = None) -> list[dict]:
    """One row per (successful image, word): the sentence without the word, re-rendered with the
    image's seed and judged.

    Jobs are rendered in batches cut every ``batch`` jobs; ``done`` maps batch numbers to rows
    already measured (taken as they are), and ``on_batch(number, rows)`` hears of each batch this
    call renders.
    """
    jobs = counterfactual_jobs(records)
    done = done or {}
    rows = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with progress_bar(*columns, disable=not show_progress) as bar:
        task = bar.add_task("explaining: renders without each word", total=len(jobs))
        for number, start in enumerate(range(0, len(jobs), batch)):
            chunk = jobs[start:start + batch]
            if number in done:
                measured = done[number]
            else:
                measured = _judge_chunk(chunk, generator, judge)
                if on_batch is not None:
                    on_batch(number, measured)
            rows += measured
            bar.advance(task, len(chunk))
    return rows


def _judge_chunk(chunk, generator, judge: Judge) -> list[dict]:
    rendered = generator.render([prompt for _, _, prompt in chunk],
                                [record.seed for record, _, _ in chunk],
                                negative_prompt=chunk[0][0].negative_prompt)
    rows = []
    by_pair: dict[tuple[str, str], list[int]] = {}
    for position, (record, _, _) in enumerate(chunk):
        if not rendered[position].failed:
            by_pair.setdefault((record.source, record.target), []).append(position)
    verdicts = {}
    for (source, target), positions in by_pair.items():
        judged = judge.judge([rendered[p].image for p in positions],
                             judge.class_names.index(source), judge.class_names.index(target))
        verdicts.update(zip(positions, judged, strict=True))
    for position, (record, word, prompt) in enumerate(chunk):
        after = verdicts.get(position)
        before = record.margin
        rows.append({
            "id": record.id, "pair": record.pair, "word": word,
            "prompt": prompt, "seed": record.seed, "failed": after is None,
            "margin_before": before, "margin_after": None if after is None else after.margin,
            "effect": None if after is None else before - after.margin,
            "top1_after": None if after is None else after.top1,
            "necessary": None if after is None else not after.top1_success,
        })
    return rows


def rank_cues(rows: Sequence[dict], explained: Sequence[str], seed: int = 0) -> list[dict]:
    """One pair's counterfactual rows → its words ranked by what they carry, strongest first.

    ``explained``: the ids of the pair's successful images. A word's ``effect_per_success`` is its
    margin drop averaged over *all* of them, counting 0 where the sentence did not use it: the
    expected drop when the word is taken out of a random success of the pair. Ranking by it
    (not by ``mean_effect``, the mean over the images that used the word) keeps a word seen once
    with a large drop below a word that carried many successes; its bootstrap interval over the
    pair's successes is wide when the word was rare.
    """
    words: dict[str, dict[str, dict]] = {}
    for row in rows:
        if not row["failed"]:
            words.setdefault(row["word"], {})[row["id"]] = row
    cues = []
    for word, mine in words.items():
        effects = [row["effect"] for row in mine.values()]
        per_success = bootstrap_mean([mine[i]["effect"] if i in mine else 0.0 for i in explained],
                                     seed=seed)
        necessary = sum(row["necessary"] for row in mine.values())
        cues.append({"word": word, "images": len(mine), "necessary": necessary,
                     "necessary_rate": necessary / len(mine),
                     "mean_effect": sum(effects) / len(effects),
                     "effect_per_success": per_success["mean"], "ci95": per_success["ci95"]})
    cues.sort(key=lambda cue: (-cue["effect_per_success"], cue["word"]))
    for rank, cue in enumerate(cues, start=1):
        cue["rank"] = rank
    return cues


def explain_records(records: Sequence[AttackRecord], generator, judge: Judge, seed: int = 0,
                    show_progress: bool = True, done: dict[int, list[dict]] | None = None,
                    on_batch: Callable[[int, list[dict]], None] | None = None,
                    batch: int = RENDER_BATCH) -> tuple[dict, list[dict]]:
    """``({pair: summary with ranked cues}, counterfactual rows)`` for a run's records;
    ``done``, ``on_batch`` and ``batch`` as in :func:`counterfactuals`."""
    rows = counterfactuals(records, generator, judge, batch, show_progress, done, on_batch)
    pairs = {}
    for pair in dict.fromkeys(r.pair for r in records):
        mine = [r for r in records if r.pair == pair]
        explained = successes(mine)
        pairs[pair] = {
            "source": mine[0].source, "target": mine[0].target,
            "successes": len(explained),
            "by_arm": {arm: sum(r.arm == arm for r in explained)
                       for arm in dict.fromkeys(r.arm for r in mine)},
            "cues": rank_cues([row for row in rows if row["pair"] == pair],
                              [r.id for r in explained], seed),
        }
    return pairs, rows


def explain_run(run_dir: Path, generator, judge: Judge, arms: Sequence[str] | None = None,
                seed: int = 0, show_progress: bool = True, batch: int = RENDER_BATCH) -> dict:
    """Explain an attack or campaign folder (its ``results.jsonl``); writes ``cues.json`` and
    ``explain.jsonl`` there and returns what ``cues.json`` holds. ``arms`` limits which arms'
    successes are explained (default: every arm)."""
    run_dir = Path(run_dir)
    records = read_records(run_dir / RESULTS)
    if not records:
        raise NeuronAttackError(f"{run_dir / RESULTS} holds no records; give the folder of a "
                                "finished attack or campaign.")
    if arms is not None:
        records = [r for r in records if r.arm in arms]
    journal = run_dir / JOURNAL
    header = journal_header(records, generator.name, judge.name, judge.class_names, batch)
    done = read_journal(journal, header)
    if done:
        stderr_console().print(f"resuming: {len(done)} batches of counterfactuals already "
                               f"measured in {journal}", highlight=False)
    else:
        write_text(journal, json.dumps(header) + "\n")

    def keep(number: int, rows: list[dict]) -> None:
        # One line per batch, flushed at once: a cut line is one batch lost, never half of one.
        with open(journal, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"batch": number, "rows": rows}) + "\n")

    pairs, rows = explain_records(records, generator, judge, seed, show_progress, done, keep,
                                  batch)
    write_text(run_dir / COUNTERFACTUALS, "".join(json.dumps(row) + "\n" for row in rows))
    result = {"schema": SCHEMA, "model": judge.name, "generator": generator.name,
              "arms": list(arms) if arms is not None else None, "seed": seed,
              "top": TOP_CUES, "pairs": pairs, "versions": versions()}
    write_json(run_dir / CUES, result)
    if not (run_dir / "units").is_dir():  # an attack folder: its summary shows the cues
        write_summary(run_dir, read_records(run_dir / RESULTS))
    journal.unlink()
    return result


def journal_header(records: Sequence[AttackRecord], generator: str, judge: str,
                   class_names: Sequence[str], batch: int = RENDER_BATCH) -> dict:
    """What a journal's batches were measured for: a journal of other jobs, models, classes or
    batch cuts is not resumed from."""
    jobs = [[record.id, word, prompt, record.seed, record.margin]
            for record, word, prompt in counterfactual_jobs(records)]
    return {"schema": SCHEMA, "jobs": json_digest(jobs), "generator": generator, "judge": judge,
            "classes": json_digest(list(class_names)), "batch": batch}


def read_journal(path: Path, header: dict) -> dict[int, list[dict]]:
    """The batches a journal holds, ``{batch number: rows}``; none when there is no journal or
    it was written for another header. A cut last line (the run killed mid-write) is dropped."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        if not lines or json.loads(lines[0]) != header:
            return {}
    except ValueError:
        return {}
    done = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except ValueError:
            break
        done[entry["batch"]] = entry["rows"]
    return done


def read_cues(run_dir: Path) -> dict | None:
    """``cues.json`` of a run folder, or None when ``explain`` has not run there."""
    path = Path(run_dir) / CUES
    return json.loads(path.read_text()) if path.is_file() else None


def flip_words(run_dir: Path) -> dict[str, dict]:
    """Per explained image id, the word whose removal dropped its margin most (from
    ``explain.jsonl``): ``{"word", "effect", "necessary", "prompt"}`` (``prompt``: the sentence
    without the word); empty before ``explain`` runs."""
    path = Path(run_dir) / COUNTERFACTUALS
    best: dict[str, dict] = {}
    if not path.is_file():
        return best
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if not row["failed"] and row["effect"] > best.get(row["id"], {}).get("effect", -1e9):
            best[row["id"]] = {key: row[key] for key in ("word", "effect", "necessary",
                                                          "prompt")}
    return best


def run_models(run_dir: Path) -> dict:
    """What made a run, from its ``meta.json``: ``clip``, ``generator`` (a spec
    ``models.generators.load_generator`` takes, with its overrides) and ``classes`` (a class-set
    spec, or None when an attack folder written by the library, not the CLI, does not say)."""
    meta = json.loads((Path(run_dir) / "meta.json").read_text())
    if "settings" in meta and "clip" in meta["settings"]:  # a campaign
        settings = meta["settings"]
        generator = settings["generator"]
        return {"clip": settings["clip"], "classes": settings["classes"],
                "generator": generator["spec"],
                "overrides": {key: generator.get(key) for key in ("steps", "guidance", "size")}}
    generator = meta["generator"]
    # A plug-in's generator is named after its plug-in, whose CLIP has its own class set.
    plugin = find_plugin(generator["name"])
    own = plugin is not None and plugin.make_generator is not None
    clip_from = clip_plugin(meta["model"])
    size = generator.get("size")
    return {"clip": meta["model"],
            "classes": meta.get("class_set") or (
                clip_from.name if clip_from is not None and clip_from.class_names is not None
                else None),
            "generator": generator["name"] if own else generator.get("model") or generator["name"],
            "overrides": {} if own else {"steps": generator.get("steps"),
                                         "guidance": generator.get("guidance"),
                                         "size": tuple(size) if size else None}}
