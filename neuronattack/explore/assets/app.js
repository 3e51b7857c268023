// neuronattack atlas explorer: hash routes over data files loaded as scripts (file:// has no fetch).
// Every text is set with textContent or as an attribute value, never parsed as HTML.
"use strict";

const NA = (() => {
  const site = window.NA_SITE;
  const loaded = new Map();  // "kind:key" -> payload
  const waiting = new Map();  // "kind:key" -> {promise, resolve}
  const SHOWN = 200;  // search hits rendered before "show all"
  let wordIndex = null;  // Map word -> index, built when words.js arrives

  function receive(kind, key, payload) {
    const id = `${kind}:${key}`;
    loaded.set(id, payload);
    const entry = waiting.get(id);
    if (entry) { waiting.delete(id); entry.resolve(payload); }
  }

  function load(kind, key, src) {
    const id = `${kind}:${key}`;
    if (loaded.has(id)) return Promise.resolve(loaded.get(id));
    if (waiting.has(id)) return waiting.get(id).promise;
    let resolve, reject;
    const promise = new Promise((yes, no) => { resolve = yes; reject = no; });
    waiting.set(id, { promise, resolve });
    const script = document.createElement("script");
    script.src = src;
    script.onerror = () => { waiting.delete(id); reject(new Error(`cannot read ${src}`)); };
    document.head.appendChild(script);
    return promise;
  }

  async function words() {
    const list = await load("words", "", "data/words.js");
    if (!wordIndex) wordIndex = new Map(list.map((word, index) => [word, index]));
    return list;
  }

  // el("a", {href: "#x"}, "text", child): attributes and text are never parsed as HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const fmt = (x, digits = 3) => (x >= 0 ? "+" : "") + x.toFixed(digits);
  const neuronLink = (name) => el("a", { href: `#neuron/${name}` }, name);
  const wordLink = (word) => el("a", { href: `#search/${encodeURIComponent(word)}` }, word);

  function table(headers, rows, className) {
    return el("table", { class: className || null },
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
  }

  function show(title, ...content) {
    const view = document.getElementById("view");
    const heading = el("h2", { tabindex: "-1", id: "view-title" }, title);
    view.replaceChildren(el("p", {}, el("a", { href: "#" }, "← overview")), heading, ...content);
    view.setAttribute("aria-labelledby", "view-title");
    document.getElementById("overview").hidden = true;
    view.hidden = false;
    document.title = `${title} · neuronattack`;
    heading.focus();
  }

  const page = (title, ...content) => ({ title, content });

  function status(text) { document.getElementById("status").textContent = text; }

  async function searchView(query) {
    const word = query.trim().toLowerCase();
    document.getElementById("q").value = query;
    const list = await words();
    if (!wordIndex.has(word)) {
      const close = list.filter((w) => w.startsWith(word.slice(0, 3))).slice(0, 8);
      return page(`“${query}” is not in the vocabulary`,
        close.length ? el("p", {}, "Words that start alike: ", close.map((w) => [wordLink(w), " "]))
          : el("p", {}, "No word starts alike."));
    }
    const index = wordIndex.get(word);
    const shard = index % site.shards;
    const postings = (await load("search", String(shard), `data/search/${shard}.js`))[index] || [];
    const rows = (limit) => postings.slice(0, limit).map(([layer, neuron, coef, rank]) =>
      [neuronLink(`${layer}.${neuron}`), String(layer), fmt(coef), String(rank + 1)]);
    const headers = ["neuron", "block", "coefficient", "place among its words"];
    const result = table(headers, rows(SHOWN), "hits");
    const more = postings.length > SHOWN ? el("button", { type: "button" },
      `Show all ${postings.length}`) : null;
    if (more) more.onclick = () => { result.replaceWith(table(headers, rows(), "hits")); more.remove(); };
    return page(`Neurons that write “${word}”`,
      el("p", {}, postings.length ? `${postings.length} neurons, strongest coefficient first.`
        : "No neuron's decomposition uses this word."), result, more);
  }

  function findBlock(layer) { return site.blocks.find((b) => b.layer === layer); }

  async function neuronRecord(layer, neuron) {
    const block = findBlock(layer);
    if (!block) return null;
    const row = block.positions ? block.positions.indexOf(neuron) : neuron - block.first;
    if (row < 0 || row >= block.neurons) return null;
    const chunk = Math.floor(row / block.chunk);
    const records = await load("neurons", `${layer}/${chunk}`, `data/neurons/${layer}/${chunk}.js`);
    return { record: records[row % block.chunk], block, row };
  }

  async function neuronView(name) {
    const [layer, neuron] = name.split(".").map(Number);
    const found = await neuronRecord(layer, neuron);
    if (!found) return page(`No neuron ${name} in this atlas`);
    const { record, block, row } = found;
    const thumbs = new Set(site.thumbnails);
    const images = record.images.map((index, k) => {
      const path = site.image_names[String(index)] || `#${index}`;
      const caption = el("figcaption", {}, path);
      const alt = `Top image ${k + 1} of neuron ${name}: ${path}`;
      return el("figure", {}, thumbs.has(index)
        ? el("img", { src: `thumbs/${index}.jpg`, alt, loading: "lazy", width: "96", height: "96" })
        : el("div", { class: "missing", role: "img", "aria-label": `${alt} (image not available)` },
          "no image"), caption);
    });
    const neighbour = (offset, label) => {
      const r = row + offset;
      if (r < 0 || r >= block.neurons) return null;
      const n = block.positions ? block.positions[r] : block.first + r;
      return el("a", { href: `#neuron/${layer}.${n}`, rel: offset < 0 ? "prev" : "next" }, label);
    };
    const max = Math.max(...record.words.map(([, c]) => Math.abs(c)), 1e-12);
    return page(`Neuron ${name}`,
      el("p", { class: "nav" }, neighbour(-1, "← previous"), " ", neighbour(1, "next →")),
      el("dl", { class: "facts" },
        el("dt", {}, "block"), el("dd", {}, String(layer)),
        el("dt", {}, "variance explained"), el("dd", {}, record.variance.toFixed(3)),
        el("dt", {}, "effect threshold"), el("dd", {}, record.threshold.toFixed(3)),
        el("dt", {}, "word reconstruction cosine"), el("dd", {}, record.cosine.toFixed(3))),
      el("h3", {}, "Top images"),
      images.length ? el("div", { class: "gallery" }, images) : el("p", {}, "No top images kept."),
      el("h3", {}, `Words (${record.words.length})`),
      table(["word", "coefficient", ""], record.words.map(([word, coef]) => [
        wordLink(word), fmt(coef),
        el("span", { class: coef >= 0 ? "bar pos" : "bar neg", "aria-hidden": "true",
          style: `width:${(100 * Math.abs(coef) / max).toFixed(1)}%` })]), "words"));
  }

  function pairView(index) {
    const pair = site.pairs[Number(index)];
    if (!pair) return page("No such pair");
    return page(`${pair.source} → ${pair.target}`,
      el("p", {}, "What the attack's method arm would use: the neurons whose direction is most ",
        "aligned with δ = e(target) − e(source), and their words that are unrelated to the target, ",
        "by coefficient × (r·δ)."),
      el("h3", {}, `Words (${pair.words.length})`),
      table(["word", "score", "from neuron", "coefficient"], pair.words.map((w) =>
        [wordLink(w.word), w.score.toFixed(4), neuronLink(w.neuron), fmt(w.coefficient)])),
      el("h3", {}, `Neurons (${pair.neurons.length})`),
      table(["neuron", "r·δ"], pair.neurons.map((n) => [neuronLink(n.neuron), fmt(n.projection, 4)])),
      el("h3", {}, `Dropped words (${pair.dropped.length})`),
      table(["word", "reason"], pair.dropped.map((d) => [d.word, d.reason])));
  }

  function headView(name) {
    const head = site.heads.find((h) => h.head === name);
    if (!head) return page(`No head ${name} in this atlas`);
    return page(`Head ${name}${head.role ? ` · ${head.role}` : ""}`,
      head.accuracy !== null ? el("p", {}, `Accuracy with this head replaced by its texts: ${(100 * head.accuracy).toFixed(1)}%`) : null,
      table(["text", "variance explained"], head.texts.map(([text, v]) => [text, v.toFixed(4)])));
  }

  let latest = 0;  // only the newest route may draw: loads can finish out of order

  async function route() {
    const token = ++latest;
    try {
      const [kind, ...rest] = decodeURIComponent(location.hash.slice(1)).split("/");
      const arg = rest.join("/");
      const views = { search: searchView, neuron: neuronView, pair: pairView, head: headView };
      const drawn = views[kind] && arg ? await views[kind](arg) : null;
      if (token !== latest) return;
      if (drawn) show(drawn.title, ...drawn.content);
      else {
        document.getElementById("view").hidden = true;
        document.getElementById("overview").hidden = false;
      }
      status("");
    } catch (error) {
      status(`${error.message}: the site folder is incomplete; rebuild it with neuronattack explore.`);
    }
  }

  // The search box: a combobox whose listbox offers vocabulary words by prefix (arrows, Enter, Esc).
  function setupSearch() {
    const input = document.getElementById("q");
    const box = document.getElementById("suggestions");
    let active = -1;
    const options = () => [...box.children];
    const close = () => { box.hidden = true; active = -1; input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant"); };
    const highlight = (i) => {
      options().forEach((o, k) => o.setAttribute("aria-selected", String(k === i)));
      active = i;
      if (i >= 0) input.setAttribute("aria-activedescendant", options()[i].id);
    };
    const go = (word) => {
      close();
      const target = `#search/${encodeURIComponent(word)}`;
      if (location.hash === target) route(); else location.hash = target;
    };
    input.addEventListener("input", async () => {
      const prefix = input.value.trim().toLowerCase();
      if (!prefix) { close(); return; }
      const list = await words();
      const matches = [];
      for (const w of list) { if (w.startsWith(prefix)) { matches.push(w); if (matches.length === 10) break; } }
      box.replaceChildren(...matches.map((w, k) => {
        const option = el("li", { role: "option", id: `suggestion-${k}`, "aria-selected": "false" }, w);
        option.addEventListener("mousedown", (event) => { event.preventDefault(); go(w); });
        return option;
      }));
      box.hidden = matches.length === 0;
      input.setAttribute("aria-expanded", String(!box.hidden));
      active = -1;
    });
    input.addEventListener("keydown", (event) => {
      const n = options().length;
      if (event.key === "ArrowDown" && n) { event.preventDefault(); highlight((active + 1) % n); }
      else if (event.key === "ArrowUp" && n) { event.preventDefault(); highlight((active - 1 + n) % n); }
      // Escape closes an open list and keeps the text (the browser's own Escape clears it).
      else if (event.key === "Escape" && !box.hidden) { event.preventDefault(); close(); }
      // Enter on a suggestion takes it; the form's submit then searches (one path for both).
      else if (event.key === "Enter" && active >= 0 && !box.hidden) input.value = options()[active].textContent;
    });
    input.addEventListener("blur", close);
    document.getElementById("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (input.value.trim()) go(input.value.trim());
    });
  }

  setupSearch();
  window.addEventListener("hashchange", route);
  if (location.hash.length > 1) route();
  return { receive, route };
})();
