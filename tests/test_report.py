"""`report`: the static HTML page of a run, its numbers, its escaping, and a real browser render."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image
from test_export import ATTACKED, MALICIOUS, OTHER, build_attack, build_campaign

from neuronattack.attack.stats import wilson_interval
from neuronattack.campaign.report import write_report


def rate(successes: int, trials: int) -> str:
    """How the page shows a rate: percent, 95% Wilson interval, counts."""
    low, high = wilson_interval(successes, trials)
    return (f"{100 * successes / trials:.1f}% <span class=\"ci\">[{100 * low:.1f}% – "
            f"{100 * high:.1f}%] {successes}/{trials}</span>")


def image_sources(html: str, page: Path) -> list[Path]:
    return [page.parent / unquote(src) for src in re.findall(r'<img src="([^"]+)"', html)]


def test_report_shows_rates_galleries_and_escapes_every_text(tmp_path):
    run = build_campaign(tmp_path / "run")
    page = write_report(run)
    assert page == run / "report.html"
    html = page.read_text()

    # Overall: method 3 of 5 rendered fooled, 2 of them valid; source-only 1 of 5, valid.
    overall = html[html.index("<h2>All pairs"):html.index("<h2>Transfer")]
    assert rate(3, 5) in overall and rate(2, 5) in overall and rate(1, 5) in overall
    pair = html[html.index('id="pair-tabby_cat-golden_retriever"'):]
    assert rate(2, 3) in pair and rate(1, 3) in pair and rate(0, 2) in pair
    # Transfer: the other judge takes 3 of 5 method images for the target, no source-only one.
    transfer = html[html.index("<h2>Transfer"):html.index('<section id="pair-')]
    assert f"<td>{OTHER}</td>\n<td>{rate(3, 5)}</td><td>{rate(0, 5)}</td>" in transfer
    assert f"{ATTACKED} <span class=\"badge neutral\">attacked</span>" in transfer

    assert "every rate on this page is meaningless" in html
    assert "tiny (tiny-random-sd), 2 steps" in html and "0123456789abcdef" in html
    assert "(2 of 2 shown)" in html and "filtered: target seen" in html
    assert '<span>9.101</span>' in html and "<span>leash</span>" in html and "+0.050" in html

    sources = image_sources(html, page)
    assert len(sources) == 5 and all(path.is_file() for path in sources)  # rendered method
    assert "<script" not in html.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;"
    assert html.count(escaped) == 4  # caption and alt text of the two images with that prompt
    assert MALICIOUS not in html

    capped = write_report(run, tmp_path / "capped.html", per_pair=1).read_text()
    assert "(1 of 2 shown)" in capped and len(image_sources(capped, tmp_path / "x")) == 4


def test_report_of_a_single_attack_written_elsewhere(tmp_path):
    run = build_attack(tmp_path / "attack")
    page = write_report(run, tmp_path / "pages" / "cat.html")
    html = page.read_text()
    assert "<title>cat → dog · neuronattack report</title>" in html
    assert "meaningless" not in html and "cifar10 (2 classes used)" in html
    sources = image_sources(html, page)
    assert [p.name for p in sources] == ["cat-dog-s0-method-0000.png",
                                         "cat-dog-s0-method-0001.png"]
    assert all(p.is_file() for p in sources) and '"../attack/images/' in html


def find_chromium() -> str | None:
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def test_report_renders_in_headless_chromium(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed")
    page = write_report(build_campaign(tmp_path / "run"))
    shot = tmp_path / "shot.png"
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
               f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 20  # text, tables and images, not a blank or error page
    # The red "meaningless" banner is drawn near the top.
    top = pixels[:400]
    assert ((top[..., 0] > 150) & (top[..., 1] < 60) & (top[..., 2] < 60)).sum() > 200
