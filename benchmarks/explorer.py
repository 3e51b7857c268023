"""First paint of the atlas explorer on a full-size atlas, in headless Chromium, vs. one page.

A synthetic atlas of the full size (3 blocks x 3,072 neurons x 128 words over a 30,000-word
vocabulary, 100 top images per neuron; contents random, format exact) is written, the explorer site
is built from it, and both it and the baseline are opened from disk in headless Chromium:

- explorer: ``index.html`` (the overview in the HTML, data files loaded on demand);
- baseline: the unpaged page, every neuron's words and coefficients in one static HTML file,
  which is what an explorer without paging would have to show.

Printed: the median first-contentful-paint and load-event end (Chromium's own timings; the unpaged
page paints its first sections while the rest still streams in, so its load end is the time until
all of it is there) of each over --repeats page loads, their ratios, and the explorer's time from a
route change to a drawn search result and to a drawn neuron page (measured inside the page).

    python benchmarks/explorer.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import html
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from chromium import Browser, find_chromium  # noqa: E402
from synthetic_atlas import write_synthetic_atlas  # noqa: E402

from neuronattack.explore import build_site  # noqa: E402
from neuronattack.neurons.atlas import Atlas  # noqa: E402

FCP = "performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
LOADED = "performance.getEntriesByType('navigation')[0]?.loadEventEnd"
# Change the route, then wait for the drawn result; ms from the change to the next frame after it.
ROUTE_TIME = """new Promise(done => {{
  const start = performance.now();
  location.hash = {hash!r};
  const poll = () => document.getElementById('view-title')?.textContent === {title!r}
    ? requestAnimationFrame(() => done(performance.now() - start)) : setTimeout(poll, 1);
  poll();
}})"""


def unpaged_page(atlas: Atlas, path: Path) -> Path:
    """Every neuron of the atlas with all its words, one static page (the baseline)."""
    parts = ["<!doctype html><html lang=en><meta charset=utf-8><title>all neurons</title>"
             "<body><h1>All neurons</h1>"]
    for layer in atlas.layers:
        code, fit = atlas.codes[layer], atlas.directions[layer]
        words = atlas.words
        for row, neuron in enumerate(fit.neurons.tolist()):
            pairs = zip(code.word_indices[row].tolist(), code.word_coefficients[row].tolist(),
                        strict=True)
            text = " ".join(f"{html.escape(words[i])} ({c:+.3f})" for i, c in pairs)
            parts.append(f"<section><h2>{layer}.{neuron}</h2><p>variance explained "
                         f"{float(fit.variance_explained[row]):.3f}</p><p>{text}</p></section>")
    path.write_text("".join(parts) + "</body></html>", encoding="utf-8")
    return path


def first_paint(browser: Browser, url: str) -> tuple[float, float]:
    """(first contentful paint, load event end) in ms from navigation start."""
    browser.open("about:blank")
    browser.open(url, timeout=300)
    return browser.wait_for(FCP, timeout=300), browser.wait_for(LOADED, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        words = [f"word{i}" for i in range(30_000)]
        atlas_dir = write_synthetic_atlas(tmp / "atlas", layers=(8, 9, 10), neurons=3072,
                                          words=words, nonzeros=128, out_dim=512, top_k=100,
                                          images=[f"n{i // 5:05d}/{i}.JPEG" for i in range(5000)])
        atlas = Atlas.load(atlas_dir)
        print(f"synthetic atlas: {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        index = build_site(atlas, tmp / "site")
        built = time.perf_counter() - start
        site_bytes = sum(p.stat().st_size for p in (tmp / "site").rglob("*") if p.is_file())
        baseline = unpaged_page(atlas, tmp / "unpaged.html")
        print(f"explorer site built in {built:.1f} s, {site_bytes / 2**20:.1f} MiB in "
              f"{sum(1 for _ in (tmp / 'site').rglob('*.js'))} files; index.html "
              f"{index.stat().st_size / 2**10:.0f} KiB; unpaged page "
              f"{baseline.stat().st_size / 2**20:.1f} MiB")
        with Browser(chromium) as browser:
            ours = [first_paint(browser, index.as_uri()) for _ in range(args.repeats)]
            theirs = [first_paint(browser, baseline.as_uri()) for _ in range(args.repeats)]
            searches, neurons = [], []
            for k in range(args.repeats):
                browser.open("about:blank")
                browser.open(index.as_uri())
                word = words[1000 + 7 * k]  # a shard not loaded before
                searches.append(browser.evaluate(ROUTE_TIME.format(
                    hash=f"search/{word}", title=f"Neurons that write “{word}”")))
                neuron = f"9.{1000 + 300 * k}"
                neurons.append(browser.evaluate(ROUTE_TIME.format(
                    hash=f"neuron/{neuron}", title=f"Neuron {neuron}")))
    for k, what in enumerate(("first contentful paint", "load event end")):
        mine, other = [t[k] for t in ours], [t[k] for t in theirs]
        explorer, unpaged = statistics.median(mine), statistics.median(other)
        print(f"{what}, median of {args.repeats}: explorer {explorer:.0f} ms "
              f"({', '.join(f'{t:.0f}' for t in mine)}), unpaged page {unpaged:.0f} ms "
              f"({', '.join(f'{t:.0f}' for t in other)}); ratio unpaged / explorer "
              f"{unpaged / explorer:.1f}x")
    print(f"explorer, route change to drawn view (first load of its data file), median: search "
          f"{statistics.median(searches):.0f} ms, neuron page {statistics.median(neurons):.0f} ms")


if __name__ == "__main__":
    main()
