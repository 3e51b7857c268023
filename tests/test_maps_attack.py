"""Why-maps in the attack loop: one beside every image, its margin the judge's, shown in the
summary and the report; ``--no-why-maps`` turns them off."""

from __future__ import annotations

import json

from click.testing import CliRunner
from PIL import Image
from test_attack_run import attack_argv, environment  # noqa: F401  (the fixture)

from neuronattack.attack.explain import flip_words
from neuronattack.attack.records import read_records
from neuronattack.attack.run import write_summary
from neuronattack.campaign.report import write_report
from neuronattack.cli import main
from neuronattack.maps.why import why_map_path


def test_every_attack_image_gets_its_why_map(environment, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    result = CliRunner().invoke(main, attack_argv(environment, out, "--arms", "method"))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        why = out / why_map_path(record["image"])
        with Image.open(why) as png:
            info = json.loads(png.text["neuronattack"])
        judged = next(iter(record["scores"].values()))
        assert abs(info["margin"] - judged["margin"]) < 1e-4
        assert abs(info["patches"] + info["rest"] - info["margin"]) < 1e-5
    # Both pages show the method arm's images, each with its map.
    name = why_map_path(records[0]["image"]).name
    assert name in write_report(out).read_text()
    assert name in (out / "summary.html").read_text()

    # After `explain`, the word whose removal cost an image most is shown beside its map.
    rows = [{"id": records[0]["id"], "word": word, "effect": effect, "necessary": effect > 0.1,
             "failed": False, "prompt": f"a cat without {word}"}
            for word, effect in (("flipword-small", 0.05), ("flipword-large", 0.2))]
    (out / "explain.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert flip_words(out) == {records[0]["id"]: {
        "word": "flipword-large", "effect": 0.2, "necessary": True,
        "prompt": "a cat without flipword-large"}}
    write_summary(out, read_records(out / "results.jsonl"))
    summary = (out / "summary.html").read_text()
    assert "<b>flip</b>: flipword-large" in summary and "flipword-small" not in summary

    plain = tmp_path / "plain"
    result = CliRunner().invoke(main, attack_argv(environment, plain, "--arms", "source-only",
                                                  "--no-why-maps"))
    assert result.exit_code == 0, result.output
    assert not list((plain / "images").glob("*-why.png"))
    assert len(list((plain / "images").glob("*.png"))) == 3
