"""Typed attack records: today's lines round-trip to the byte, every older format is read with what
it lacks derived, a newer schema is refused in one line, and readers take the pair and run seed
from the record's fields, never from its id."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from click.testing import CliRunner

from neuronattack.attack.records import RECORD_SCHEMA, AttackRecord, read_records
from neuronattack.errors import NeuronAttackError

# A line of the demo's results.jsonl as written before records carried a schema (cut to fit).
TODAY = (
    '{"id": "car-ship/s0/method/0000", "source": "car", "target": "ship", "arm": "method", '
    '"index": 0, "prompt": "a white car beside three brown trees", "negative_prompt": null, '
    '"words": ["white", "tree", "three", "brown"], "neurons": ["2.137", "2.240", "4.172"], '
    '"seed": 0, "requested_seed": 0, "retried": false, "failed": false, "failure": null, '
    '"generator": {"name": "toy", "model": "toy renderer", "size": [64, 64], '
    '"meaningless": false}, "model": "toy", "atlas": "b1be8d0db1112bb8", "writer": "template", '
    '"run_seed": 0, "image": "images/car-ship-s0-method-0000.png", "scores": {"toy": '
    '{"success": false, "top1_success": false, "margin": -0.3012385666370392, "top1": "car"}}, '
    '"success": false, "top1_success": false, "margin": -0.3012385666370392, "valid": true, '
    '"kind": "contextual", "verdict": {"valid": true, "source_present": true, '
    '"checker": "toy", "kind": "contextual"}}'
)
# A failed render, as run_attack writes it: nothing judged, so no top1_success, margin or kind.
FAILED = (
    '{"id": "cat-dog/s3/random-words/0007", "source": "cat", "target": "dog", '
    '"arm": "random-words", "index": 7, "prompt": "a cat", "negative_prompt": "text", '
    '"words": [], "neurons": [], "seed": 1000010, "requested_seed": 7, "retried": true, '
    '"failed": true, "failure": "all black", "generator": {"name": "tiny"}, '
    '"model": "ViT-B-32:openai", "atlas": "0123", "writer": "template", "run_seed": 3, '
    '"image": null, "scores": {}, "success": false, "valid": false, "verdict": null}'
)


def with_schema(line: str) -> str:
    return line[:-1] + f', "schema": "{RECORD_SCHEMA}"}}\n'


def test_today_s_lines_round_trip_to_the_byte_with_the_schema_last():
    for line in (TODAY, FAILED):
        record = AttackRecord.from_json(json.loads(line))
        assert record.line() == with_schema(line)
        assert AttackRecord.from_json(json.loads(record.line())) == record
    rendered, failed = (AttackRecord.from_json(json.loads(line)) for line in (TODAY, FAILED))
    assert rendered.words == ("white", "tree", "three", "brown") and rendered.rendered
    assert rendered.margin == pytest.approx(-0.3012385666370392) and rendered.kind == "contextual"
    assert not failed.rendered and failed.margin is None and not failed.top1_success
    assert failed.kind is None and "kind" not in failed.to_json()


def test_keys_this_version_does_not_know_are_kept():
    data = json.loads(TODAY) | {"reviewer": "ann"}
    record = AttackRecord.from_json(data)
    assert record.extra == {"reviewer": "ann"}
    assert list(record.to_json())[-2:] == ["reviewer", "schema"]


def test_older_formats_are_read_with_what_they_lack_derived():
    # Before the top-1 headline: no top1_success, margin or kind; the verdict has no kind.
    before_top1 = json.loads(TODAY)
    for key in ("top1_success", "margin", "kind"):
        del before_top1[key]
    before_top1["scores"]["toy"] |= {"top1": "ship", "margin": 0.25}
    before_top1["verdict"].pop("kind")
    record = AttackRecord.from_json(before_top1)
    assert record.top1_success and record.margin == 0.25 and record.kind is None
    # The first attacks: ids without the run seed, no atlas hash, no run seed.
    first = {key: value for key, value in before_top1.items() if key not in ("atlas", "run_seed")}
    first["id"] = "car-ship/method/0000"
    record = AttackRecord.from_json(first)
    assert record.atlas is None and record.run_seed is None and record.pair == "car-ship"
    # An old record written back carries today's fields and the schema.
    assert AttackRecord.from_json(json.loads(record.line())) == record


def test_a_newer_schema_is_refused_in_one_line(tmp_path):
    path = tmp_path / "results.jsonl"
    newer = json.loads(TODAY) | {"schema": "neuronattack.record/2"}
    path.write_text(TODAY + "\n" + json.dumps(newer) + "\n")
    with pytest.raises(NeuronAttackError) as refused:
        read_records(path)
    message = str(refused.value)
    assert "\n" not in message and f"{path}, line 2" in message
    assert "neuronattack.record/2" in message and "upgrade neuronattack" in message
    other = json.loads(TODAY) | {"schema": "neuronattack.attack/1"}
    path.write_text(json.dumps(other) + "\n")
    with pytest.raises(NeuronAttackError, match="not an attack record"):
        read_records(path)
    # From the command line: exit 2 and the one line, no traceback.
    (tmp_path / "meta.json").write_text(json.dumps({"schema": "neuronattack.attack/1"}))
    path.write_text(json.dumps(newer) + "\n")
    from neuronattack.cli import main

    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "neuronattack.record/2" in result.output
    assert "Traceback" not in result.output


def test_a_cut_line_is_dropped_and_a_damaged_record_named(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(TODAY + "\n" + FAILED[:80])  # a kill cut the last line
    assert [r.id for r in read_records(path)] == ["car-ship/s0/method/0000"]
    assert read_records(tmp_path / "missing.jsonl") == []
    lacking = json.loads(TODAY)
    del lacking["prompt"], lacking["scores"]
    path.write_text(json.dumps(lacking) + "\n")
    with pytest.raises(NeuronAttackError, match=r"line 1: Record car-ship/s0/method/0000 lacks "
                                                r"prompt, scores"):
        read_records(path)


def misleading(record: AttackRecord) -> AttackRecord:
    """The record under an id that names another pair and seed: readers must not believe it."""
    return replace(record, id=f"horse-airplane/s9/{record.arm}/{record.index:04d}")


def test_readers_take_pair_and_seed_from_the_fields_not_the_id(tmp_path):
    from neuronattack.attack.explain import explain_records
    from neuronattack.campaign.export import Run, class_table, dataset_row, outcome_table
    from neuronattack.campaign.runner import Unit, check_unique, summarize_run

    record = misleading(replace(AttackRecord.from_json(json.loads(FAILED)), failed=False,
                                image="images/x.png", scores={"m": {"margin": 0.1}}, model="m",
                                verdict={"source_present": True, "target_absent": True,
                                         "no_text": True, "checker": "c"},
                                valid=True, top1_success=True, margin=0.1))
    assert record.pair == "cat-dog" and record.run_seed == 3
    run = Run(tmp_path, {}, {"units/cat-dog/s3": {}}, [record])
    assert run.unit_of(record) == "units/cat-dog/s3"
    assert list(outcome_table([record])) == [("cat-dog", "random-words")]
    row = dataset_row(replace(record, scores={"m": {
        "margin": 0.1, "source_similarity": 0.2, "target_similarity": 0.3, "p_source": 0.4,
        "p_target": 0.5, "top1": "dog", "top5": ["dog"]}}), class_table([record], []))
    assert (row["pair"], row["run_seed"], row["id"]) == ("cat-dog", 3, record.id)
    summary = summarize_run([record], [Unit("cat", "dog", 3)], [])
    assert summary["pairs"]["cat-dog"]["arms"]["random-words"]["images"] == 1
    with pytest.raises(NeuronAttackError, match="Delete units/cat-dog/s3 "):
        check_unique([record, record])
    pairs, _ = explain_records([replace(record, valid=False)], generator=None, judge=None,
                               show_progress=False)
    assert list(pairs) == ["cat-dog"]


def test_reading_records_loads_no_torch():
    code = ("import sys, neuronattack.attack.records; "
            "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
