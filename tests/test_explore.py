"""`explore`: the static atlas site, its data against the atlas, and a real browser using it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from chromium import Browser, find_chromium, press
from click.testing import CliRunner
from conftest import PARITY_DIR, write_class_folders
from PIL import Image
from synthetic_atlas import write_synthetic_atlas

from neuronattack.cli import main
from neuronattack.explore.heads import load_head_roles
from neuronattack.explore.site import atlas_row, search_shards
from neuronattack.neurons.atlas import Atlas

HOSTILE = ["<script>window.pwned=1</script>", "<img src=x onerror=window.pwned=2>",
           "\"quoted\" & 'apos'"]
WORDS = [f"w{i}" for i in range(37)] + HOSTILE


def read_data(path: Path):
    """The payload of a data script ``NA.receive(kind, key, payload);``."""
    text = path.read_text(encoding="utf-8")
    return json.loads(re.fullmatch(r'NA\.receive\("\w+","[^"]*",(.*)\);\n', text, re.S).group(1))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    images = root / "images"
    paths = write_class_folders(images, ("cat", "dog"), 3, size=48)
    names = sorted(str(p.relative_to(paths)) for p in paths.rglob("*.png"))
    atlas_dir = write_synthetic_atlas(root / "atlas", words=WORDS, images=names,
                                      image_root=images)
    heads = {"heads": [{"head": "3.1", "role": "colour <b>", "texts": [
        {"text": "a red object", "variance": 0.2}, {"text": HOSTILE[0], "variance": 0.1}]},
        {"head": "2.0", "texts": [{"text": "a photo taken at night", "variance": 0.3}],
         "accuracy": 0.5}]}
    (atlas_dir / "heads.json").write_text(json.dumps(heads))
    return atlas_dir


@pytest.fixture(scope="module")
def site(synthetic, tmp_path_factory) -> Path:
    result = CliRunner().invoke(main, ["explore", str(synthetic), "--out",
                                       str(tmp_path_factory.mktemp("site")), "--json"])
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["index"])


def test_search_postings_equal_atlas_search_for_every_word(synthetic):
    atlas = Atlas.load(synthetic)
    shards = search_shards(atlas, 7)
    for index, word in enumerate(atlas.words):
        expected = [[layer, neuron, round(coef, 5), rank]
                    for layer, neuron, coef, rank in atlas.search(word)]
        assert shards.get(index % 7, {}).get(str(index), []) == expected, word


def test_neuron_records_equal_atlas_cards(synthetic):
    atlas = Atlas.load(synthetic)
    for layer in atlas.layers:
        for row, neuron in enumerate(atlas.directions[layer].neurons.tolist()):
            card, record = atlas.card(layer, neuron), atlas_row(atlas, layer, row, None, 3)
            assert [w for w, _ in record["words"]] == [w for w, _ in card.words]
            assert np.allclose([c for _, c in record["words"]], [c for _, c in card.words],
                               atol=1e-5)
            assert record["variance"] == pytest.approx(card.variance_explained, abs=1e-5)
            top = atlas.directions[layer].top_images[row, :3].tolist()
            assert record["images"] == top
    # The padded neuron keeps only its non-zero words.
    assert len(atlas_row(atlas, 1, 15, None)["words"]) == 4


def test_site_files_and_escaping(site, synthetic):
    html = site.read_text(encoding="utf-8")
    for asset in ("app.js", "style.css", "data/words.js", "data/neurons/1/0.js"):
        assert (site.parent / asset).is_file()
    assert read_data(site.parent / "data" / "words.js") == WORDS
    records = read_data(site.parent / "data" / "neurons" / "2" / "0.js")
    assert [r["neuron"] for r in records] == list(range(16))
    # Every thumbnail the site lists exists and is a small JPEG.
    thumbs = sorted((site.parent / "thumbs").glob("*.jpg"))
    assert thumbs and all(max(Image.open(p).size) <= 96 for p in thumbs)
    # Raw hostile text never reaches the HTML: the shell escapes, the inline JSON hides "<".
    assert "<script>window.pwned" not in html and "<img src=x" not in html
    assert "<b>" not in html and "colour &lt;b&gt;" in html
    assert html.count("<script") == 2  # the inline data and app.js, nothing injected


def test_head_roles_are_read_and_checked(synthetic, tmp_path):
    heads = load_head_roles(synthetic / "heads.json")
    assert [h["head"] for h in heads] == ["2.0", "3.1"] and heads[0]["accuracy"] == 0.5
    (tmp_path / "bad.json").write_text(json.dumps({"heads": [{"head": "x", "texts": []}]}))
    result = CliRunner().invoke(main, ["explore", str(synthetic), "--out", str(tmp_path / "s"),
                                       "--heads", str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "each head needs" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_out_folder_that_is_not_a_site_is_refused(synthetic, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["explore", str(synthetic), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is not an explorer site" in result.output


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed (CI installs Debian's chromium)")
    with Browser(chromium) as opened:
        yield opened


def view_text(browser: Browser) -> str:
    return browser.evaluate("document.getElementById('view').innerText")


def test_search_by_keyboard_finds_the_neurons_in_a_real_browser(browser, site, synthetic):
    atlas = Atlas.load(synthetic)
    browser.open(site.as_uri())
    assert browser.evaluate("document.getElementById('overview').hidden") is False
    # Keyboard only: Tab reaches the skip link, then the home link, then the search box.
    press(browser, "Tab")
    assert browser.evaluate("document.activeElement.textContent") == "Skip to content"
    press(browser, "Tab")
    press(browser, "Tab")
    assert browser.evaluate("document.activeElement.id") == "q"
    browser.type_text("w1")
    suggestions = browser.wait_for("!document.getElementById('suggestions').hidden && "
                                   "[...document.querySelectorAll('#suggestions li')]"
                                   ".map(li => li.textContent)")
    assert suggestions == [w for w in WORDS if w.startswith("w1")][:10]
    press(browser, "ArrowDown")
    press(browser, "ArrowDown")  # the second suggestion: w10
    assert browser.evaluate("document.getElementById('q').getAttribute("
                            "'aria-activedescendant')") == "suggestion-1"
    press(browser, "Enter")
    browser.wait_for("location.hash === '#search/w10' && document.querySelector('table.hits')")
    shown = browser.evaluate("[...document.querySelectorAll('table.hits tbody tr')]"
                             ".map(tr => [...tr.cells].map(td => td.textContent))")
    expected = atlas.search("w10")
    assert [row[0] for row in shown] == [f"{layer}.{neuron}" for layer, neuron, _, _ in expected]
    assert [float(row[2]) for row in shown] == pytest.approx([c for _, _, c, _ in expected],
                                                             abs=1e-3)
    assert browser.evaluate("document.activeElement.id") == "view-title"
    # Focus sits on the view's heading: one Tab reaches the first result; Enter opens it.
    press(browser, "Tab")
    first = f"{expected[0][0]}.{expected[0][1]}"
    assert browser.evaluate("document.activeElement.textContent") == first
    press(browser, "Enter")
    browser.wait_for(f"location.hash === '#neuron/{first}' && "
                     f"document.getElementById('view-title').textContent === 'Neuron {first}'")
    card = atlas.card(expected[0][0], expected[0][1])
    text = view_text(browser)
    assert f"{card.variance_explained:.3f}" in text
    words = browser.evaluate("[...document.querySelectorAll('table.words tbody tr td:first-child')]"
                             ".map(td => td.textContent)")
    assert words == [w for w, _ in card.words]
    # Top images: thumbnails that loaded, each with an alt text naming the neuron and the file.
    browser.wait_for("[...document.images].every(img => img.complete)")
    images = browser.evaluate("[...document.querySelectorAll('#view img')].map(img => "
                              "[img.alt, img.naturalWidth])")
    assert len(images) == 5
    for alt, width in images:
        assert alt.startswith("Top image ") and f"of neuron {first}: " in alt and width > 0


def test_hostile_words_are_shown_not_run_in_a_real_browser(browser, site, synthetic):
    atlas = Atlas.load(synthetic)
    for word in HOSTILE:
        browser.open(site.as_uri())
        browser.evaluate("document.getElementById('q').focus()")
        browser.type_text(word)
        browser.wait_for("!document.getElementById('suggestions').hidden")
        press(browser, "Escape")  # close the suggestions, keep the text; Enter submits it
        press(browser, "Enter")
        browser.wait_for("document.querySelector('table.hits')")
        assert browser.evaluate("document.getElementById('view-title').textContent") == \
            f"Neurons that write “{word.lower()}”"
        layer, neuron, _, _ = atlas.search(word)[0]
        browser.evaluate(f"location.hash = 'neuron/{layer}.{neuron}'")
        browser.wait_for(f"document.getElementById('view-title')?.textContent === "
                         f"'Neuron {layer}.{neuron}'")
        assert word.lower() in view_text(browser)
        assert browser.evaluate("window.pwned === undefined")
        assert browser.evaluate("document.querySelectorAll('#view script, img[src=x]').length") \
            == 0
    browser.evaluate("location.hash = 'head/3.1'")
    browser.wait_for("document.getElementById('view-title')?.textContent.startsWith('Head 3.1')")
    assert "colour <b>" in browser.evaluate("document.getElementById('view-title').textContent")
    assert HOSTILE[0] in view_text(browser) and browser.evaluate("window.pwned === undefined")


def test_unknown_word_and_neuron_say_so_in_a_real_browser(browser, site):
    browser.open(site.as_uri() + "#search/w1x")
    browser.wait_for("document.getElementById('view-title')")
    assert "is not in the vocabulary" in view_text(browser) and "w1" in view_text(browser)
    browser.open(site.as_uri() + "#neuron/7.3")
    browser.wait_for("document.getElementById('view-title')?.textContent === "
                     "'No neuron 7.3 in this atlas'")


# A real (tiny) atlas: class pairs need the CLIP the atlas was built on.
SPEC = f"local-dir:{PARITY_DIR}"


@pytest.fixture(scope="module")
def real_atlas(tmp_path_factory):
    words = tmp_path_factory.mktemp("words") / "words.txt"
    words.write_text("\n".join(["cat", "dog", "water", "sky", "grass", "tree", "ball", "snow",
                                "road", "car", "ship", "apple", "red", "blue", "night", "sand",
                                "kitten", "puppy", "cloud", "sign"]) + "\n")
    images = write_class_folders(tmp_path_factory.mktemp("labelled"), ("cat", "dog"), 5, seed=2)
    out = tmp_path_factory.mktemp("atlas")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURONATTACK_CACHE", str(tmp_path_factory.mktemp("cache")))
        result = CliRunner().invoke(main, [
            "analyze", "--clip", SPEC, "--images", str(images), "--layers", "2", "--out",
            str(out), "--top-k", "4", "--words", str(words), "--nonzeros", "5", "--device",
            "cpu", "--json"])
    assert result.exit_code == 0, result.output
    return out


def test_pairs_show_what_the_attack_selects(real_atlas, tmp_path, monkeypatch):
    from neuronattack.attack.filters import make_filter
    from neuronattack.attack.selection import select_words
    from neuronattack.models import load_clip
    from neuronattack.models.zeroshot import class_embeddings, text_embedding

    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["explore", str(real_atlas), "--out", str(tmp_path / "s"),
                                       "--pair", "cat:dog", "--json"])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "s" / "index.html").read_text()
    site = json.loads(re.search(r"window.NA_SITE = (.*);</script>", html).group(1))
    (pair,) = site["pairs"]
    # The slow obvious reference: the selection recomputed here, step by step.
    atlas, clip = Atlas.load(real_atlas), load_clip(SPEC)
    classes = class_embeddings(clip, ["cat", "dog"])
    words = atlas.words
    from neuronattack.models.text_encoding import encode_texts

    unit = encode_texts(clip, words)
    unit = unit / unit.norm(dim=-1, keepdim=True)
    expected = select_words(atlas, "cat", "dog", classes[1] - classes[0],
                            make_filter(words, unit, text_embedding(clip, "dog"), source="cat"))
    assert pair["words"] and [w["word"] for w in pair["words"]] == [w.word for w in
                                                                     expected.words]
    assert [n["neuron"] for n in pair["neurons"]] == [n for n, _ in expected.neurons]
    assert "dog" not in {w["word"] for w in pair["words"]}
    assert '<a href="#pair/0">cat → dog</a>' in html


def test_pairs_refuse_a_clip_with_other_vision_weights(real_atlas, tmp_path):
    result = CliRunner().invoke(main, ["explore", str(real_atlas), "--out", str(tmp_path / "s"),
                                       "--pair", "cat:dog", "--clip", "random:ViT-B-32@3"])
    assert result.exit_code == 2
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert "built on vision weights" in message
    assert "random:ViT-B-32@3 has vision weights" in message
