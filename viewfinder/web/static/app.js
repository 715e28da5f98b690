// The web face: collects the query, calls the REST API, renders what it returns. No ranking here.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  let mode = "text";
  let imageFile = null;

  // The index's size and model, and a running index or re-index job (polled while one runs).
  function showStats() {
    fetch("/stats").then((r) => r.json()).then((s) => {
      $("stats").textContent = `${s.images} images indexed with model ${s.model}` + (s.texts ? `, ${s.texts} texts stored` : "");
      const job = s.index_job;
      const running = job && job.state === "running";
      $("job").hidden = !running;
      if (running) {
        $("job").textContent = job.kind === "reindex"
          ? `Re-indexing with ${job.folder}: searches use the current index until it is done.`
          : `Indexing ${job.folder}: new images appear as they are added.`;
        setTimeout(showStats, 5000);
      }
    }).catch(() => {});
  }
  showStats();

  // -- tabs (arrow keys move between them, as the ARIA tabs pattern expects) --
  const tabs = Array.from(document.querySelectorAll("[role=tab]"));
  function selectTab(tab) {
    tabs.forEach((t) => { const on = t === tab; t.setAttribute("aria-selected", on); t.tabIndex = on ? 0 : -1; });
    mode = tab.dataset.mode;
    $("panel").setAttribute("aria-labelledby", tab.id);
    $("text-row").hidden = !(mode === "text" || mode === "hybrid");
    $("image-row").hidden = !["image", "hybrid", "describe"].includes(mode);
    $("weight-row").hidden = mode !== "hybrid";
    $("filters").hidden = mode === "duplicates" || mode === "describe";
    if (mode === "browse") $("filters").open = true;
    $("level-row").hidden = mode !== "duplicates";
    $("k-field").hidden = mode === "duplicates";
    $("go").textContent = mode === "browse" ? "Show" : mode === "duplicates" ? "Find duplicates" : "Search";
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (step) { const next = tabs[(i + step + tabs.length) % tabs.length]; next.focus(); selectTab(next); e.preventDefault(); }
    });
  });

  // -- image input: file picker, drag and drop, paste --
  function setImage(file) {
    if (!file || !file.type.startsWith("image/")) { announce("That is not an image file."); return; }
    imageFile = file;
    const img = $("preview");
    img.src = URL.createObjectURL(file);
    img.alt = `Query image: ${file.name || "pasted image"}`;
    img.hidden = false;
    announce(`Image ${file.name || "from clipboard"} ready.`);
  }
  $("file").addEventListener("change", (e) => setImage(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { $("file").click(); e.preventDefault(); } });
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); setImage(e.dataTransfer.files[0]); });
  document.addEventListener("paste", (e) => {
    const item = Array.from(e.clipboardData.items).find((it) => it.type.startsWith("image/"));
    if (item && mode !== "text") setImage(item.getAsFile());
  });
  $("weight").addEventListener("input", (e) => { $("weight-out").value = e.target.value; });

  // -- speech input where the browser has it --
  const Speech = window.SpeechRecognition || window.webkitSpeechRecognition;
  if (Speech) {
    $("speak").hidden = false;
    $("speak").addEventListener("click", () => {
      const rec = new Speech();
      rec.lang = document.documentElement.lang || "en";
      rec.onresult = (ev) => { $("q").value = ev.results[0][0].transcript; announce(`Heard: ${$("q").value}`); };
      rec.start();
    });
  }

  function announce(text) { $("status").textContent = text; }

  // -- search --
  let lastQuery = "";  // the text of the last text-only search: the heatmap view asks the API with it
  let lastForm = null, nextOffset = 0;  // for "Load more"
  let items = [];  // the images shown, in order: the detail view's previous / next

  // the filter controls become the query language's own tokens (after:2023-06 camera:canon)
  // [key, value] of each filter control that holds something
  function filterValues() {
    return Array.from(document.querySelectorAll("#filters input"))
      .map((i) => [i.dataset.key, i.value.trim()])
      .filter(([, value]) => value);
  }

  function filterTokens() {
    return filterValues().map(([key, value]) => `${key}:${/\s/.test(value) ? `"${value}"` : value}`).join(" ");
  }

  // the JSON an API call answers, or null once its error is announced
  async function fetchJson(url, options) {
    try {
      const resp = await fetch(url, options);
      const data = await resp.json();
      if (resp.ok) return data;
      announce(`Error: ${data.error}`);
    } catch (err) { announce(`Error: ${err}`); }
    return null;
  }

  function buildForm() {
    const form = new FormData();
    const query = $("q").value.trim();
    const tokens = filterTokens();
    if (mode === "text" || mode === "hybrid") form.append("query", [query, tokens].filter(Boolean).join(" "));
    else if (mode === "image" && tokens) form.append("query", tokens);
    if (mode !== "text") {
      if (!imageFile) { announce("Choose, drop or paste an image first."); return null; }
      form.append("file", imageFile, imageFile.name || "pasted.png");
    }
    if (mode === "hybrid") form.append("text_weight", $("weight").value);
    form.append("k", $("k").value);
    if (mode === "text" && !query) { announce("Type what you are looking for."); return null; }
    return form;
  }

  async function runSearch(form, offset) {
    const page = new FormData();
    form.forEach((v, key) => page.append(key, v));
    page.append("offset", String(offset));
    announce("Searching…");
    const data = await fetchJson(mode === "describe" ? "/search/image-to-text" : "/search", { method: "POST", body: page });
    if (!data) return;
    nextOffset = offset + data.hits.length;
    render(data, offset > 0);
  }

  // -- browse: the library without a query, newest first, through the same filter controls --
  async function runBrowse(offset) {
    const params = new URLSearchParams({ offset: String(offset), limit: $("k").value });
    filterValues().forEach(([key, value]) => params.set(key, value));
    announce("Loading…");
    const data = await fetchJson(`/browse?${params}`);
    if (!data) return;
    nextOffset = offset + data.images.length;
    if (offset === 0) clearResults();
    data.images.forEach((image) => addImage(image, when(image) || "no date"));
    announce(`${items.length} of ${data.total} images${data.total ? ", newest first" : " pass the filters"}.`);
    $("status").className = "muted";
    $("more").hidden = nextOffset >= data.total;
  }

  // -- duplicates: each group side by side, with the score that joined it --
  async function runDuplicates() {
    const level = $("level").value;
    announce("Looking for duplicates…");
    const groups = await fetchJson(`/duplicates?level=${level}`);
    if (!groups) return;
    clearResults();
    $("more").hidden = true;
    groups.forEach((group, n) => {
      const li = document.createElement("li");
      const h = document.createElement("h3");
      h.id = `group-${n + 1}`;
      h.textContent = group.level === "exact"
        ? `${group.images.length} copies of the same file`
        : `${group.images.length} images, joined at cosine ${group.score.toFixed(3)} (threshold ${group.threshold})`;
      const ul = document.createElement("ul");
      ul.setAttribute("aria-labelledby", h.id);
      group.images.forEach((image) => {
        const fig = document.createElement("figure");
        const cap = document.createElement("figcaption");
        cap.textContent = image.path;
        fig.append(hitButton(image, image.path), cap);
        const item = document.createElement("li");
        item.append(fig);
        ul.append(item);
      });
      li.append(h, ul);
      $("groups").append(li);
    });
    announce(groups.length ? `${groups.length} group${groups.length === 1 ? "" : "s"} of duplicates.` : "No duplicates at this level.");
    $("status").className = "muted";
  }

  $("panel").addEventListener("submit", (e) => {
    e.preventDefault();
    if (mode === "browse") { lastForm = null; lastQuery = ""; runBrowse(0); return; }
    if (mode === "duplicates") { lastQuery = ""; runDuplicates(); return; }
    const form = buildForm();
    if (!form) return;
    lastQuery = mode === "text" ? $("q").value.trim() : "";
    lastForm = form;
    // a text search lives in the address bar: bookmarkable, and Back returns to it
    if (lastQuery && new URLSearchParams(location.search).get("q") !== lastQuery) {
      history.pushState({ q: lastQuery }, "", `?q=${encodeURIComponent(lastQuery)}`);
    }
    runSearch(form, 0);
  });
  $("more").addEventListener("click", () => {
    if (mode === "browse") runBrowse(nextOffset);
    else if (lastForm) runSearch(lastForm, nextOffset);
  });

  function searchFromAddress() {
    const q = new URLSearchParams(location.search).get("q");
    if (!q) return;
    selectTab($("tab-text"));
    $("q").value = q;
    lastQuery = q; lastForm = buildForm();
    if (lastForm) runSearch(lastForm, 0);
  }
  window.addEventListener("popstate", searchFromAddress);
  searchFromAddress();

  function clearResults() {
    $("results").replaceChildren(); $("texts").replaceChildren(); $("groups").replaceChildren();
    items = [];
  }

  // an image's thumbnail as a button that opens the detail view; the image joins `items`
  function hitButton(image, alt) {
    const at = items.length;
    items.push(image);
    const btn = document.createElement("button");
    btn.className = "hit"; btn.type = "button";
    btn.title = image.score === undefined ? "Show its details" : "Show why it matched";  // named by the alt text
    const img = document.createElement("img");
    img.src = image.thumbnail_url; img.alt = alt; img.loading = "lazy";
    btn.append(img);
    btn.addEventListener("click", () => showDetail(at));
    return btn;
  }

  // one image in the grid: its thumbnail and a line under it
  function addImage(image, line) {
    const btn = hitButton(image, image.alt);
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = line;
    if (image.verdict) meta.dataset.verdict = image.verdict;
    btn.append(meta);
    const li = document.createElement("li");
    li.append(btn);
    $("results").append(li);
  }

  function render(data, append) {
    const grid = $("results"), texts = $("texts");
    if (!append) clearResults();
    data.hits.forEach((hit) => {
      if (hit.kind === "text") {
        const li = document.createElement("li");
        li.textContent = `${hit.text} — ${hit.verdict} (score ${hit.score.toFixed(3)}, confidence ${hit.confidence.toFixed(2)})`;
        texts.append(li);
        return;
      }
      addImage(hit, `#${hit.rank} · ${hit.verdict}${hit.likeness ? ` · ${hit.likeness}` : ""}`);
    });
    const shownCount = grid.children.length + texts.children.length;
    let msg = `${shownCount} result${shownCount === 1 ? "" : "s"} of ${data.collection_size}.`;
    if (data.abstained) msg = `${data.message}. Showing the ${shownCount} closest anyway.`;
    announce(msg);
    $("status").className = data.abstained ? "abstain" : "muted";
    $("more").hidden = data.hits.length === 0 || nextOffset >= data.collection_size;
  }

  // -- the detail view: the image, what the index knows of it, and (for a search hit) why it matched --
  // the date as the camera's clock showed it: taken_at is UTC, shifted by the offset the camera
  // wrote; without one the camera's local time was kept as if UTC; a file date is in this browser's zone
  function when(info) {
    if (info.taken_at == null) return "";
    const style = { dateStyle: "medium", timeStyle: "short" };
    if (info.taken_source === "file") {
      return `${new Date(info.taken_at * 1000).toLocaleString(undefined, style)} (the file's date: the photo has none)`;
    }
    const offset = info.taken_offset || 0;
    const date = new Date((info.taken_at + 60 * offset) * 1000).toLocaleString(undefined, { ...style, timeZone: "UTC" });
    if (info.taken_offset == null) return date;
    const hhmm = `${String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0")}:${String(Math.abs(offset) % 60).padStart(2, "0")}`;
    return `${date} (UTC${offset < 0 ? "−" : "+"}${hhmm})`;
  }
  function bytes(n) { return n < 1e6 ? `${Math.round(n / 1e3)} kB` : `${(n / 1e6).toFixed(1)} MB`; }

  async function showFacts(image) {
    const dl = $("detail-facts");
    dl.replaceChildren();
    let info = image;
    try {
      const resp = await fetch(`/images/${image.id}/info`);
      if (resp.ok) info = await resp.json();
    } catch (err) { /* the facts the hit carries are enough to go on */ }
    if (shown !== image) return;  // the user moved on meanwhile
    const place = [info.city, info.metro && `in ${info.metro}`, info.region, info.country].filter(Boolean).join(", ");
    const gps = info.latitude == null ? "" : `${info.latitude.toFixed(5)}, ${info.longitude.toFixed(5)}`;
    const facts = [
      ["Taken", when(info)],
      ["Place", [place, gps && `(${gps})`].filter(Boolean).join(" ")],
      ["Camera", [info.camera, info.lens].filter(Boolean).join(" · ")],
      ["Size", info.width ? `${info.width} × ${info.height} pixels, ${bytes(info.size)}` : ""],
      ["File", info.path],
    ];
    facts.filter(([, v]) => v).forEach(([k, v]) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      dl.append(dt, dd);
    });
  }

  let shown = null;  // the image in the detail view
  function showDetail(at) {
    const hit = items[at];
    shown = hit;
    shown.at = at;
    const scored = hit.score !== undefined;
    $("detail-title").textContent = scored ? "Why this matched" : "Image details";
    $("detail-pos").textContent = `${at + 1} of ${items.length}`;
    $("detail-prev").disabled = at === 0;
    $("detail-next").disabled = at === items.length - 1;
    $("detail-img").src = hit.image_url;
    $("detail-img").alt = hit.alt || hit.path;
    $("detail-open").href = hit.image_url;
    const sure = hit.caption_confidence == null ? "" : ` (the captioner is ${Math.round(100 * hit.caption_confidence)}% sure)`;
    $("detail-caption").textContent = hit.caption ? `Caption${sure}: ${hit.caption}` : hit.best_text || hit.path.split("/").pop();
    showFacts(hit);
    $("detail-why").hidden = !scored;
    $("detail-where").hidden = !(scored && lastQuery);
    $("detail-where").setAttribute("aria-pressed", "false");
    $("detail-where-summary").textContent = "";
    if (!$("detail").open) { $("detail").showModal(); $("detail-close").focus(); }
    if (!scored) return;
    $("detail-verdict").textContent = `${hit.verdict}${hit.likeness ? ` (${hit.likeness} of your image)` : ""}: score ${hit.score.toFixed(3)}, confidence ${hit.confidence.toFixed(2)} (the chance that this image is what you asked for)`;
    const body = document.querySelector("#detail-parts tbody");
    body.replaceChildren();
    const total = Object.values(hit.contributions).reduce((s, v) => s + Math.abs(v), 0) || 1;
    Object.entries(hit.contributions).forEach(([part, value]) => {
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = part;
      const b = document.createElement("td"); b.textContent = value.toFixed(3);
      const c = document.createElement("td");
      const bar = document.createElement("span");
      bar.className = value < 0 ? "bar negative" : "bar";
      bar.style.width = `${Math.round(100 * Math.abs(value) / total)}%`;
      c.append(bar); c.setAttribute("aria-hidden", "true");
      tr.append(a, b, c); body.append(tr);
    });
    const words = (hit.extra && hit.extra.matched_terms) || [];
    $("detail-words").textContent = words.length ? `Words found in its caption, text or path: ${words.join(", ")}` : "";
    $("detail-best-text").textContent = hit.best_text ? `Nearest stored text: ${hit.best_text}` : "";
    $("detail-explain").textContent = hit.explanation;
  }
  $("detail-close").addEventListener("click", () => $("detail").close());
  function step(by) {
    const at = shown.at + by;
    if (at >= 0 && at < items.length) showDetail(at);
  }
  $("detail-prev").addEventListener("click", () => step(-1));
  $("detail-next").addEventListener("click", () => step(1));
  $("detail").addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
    if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
  });

  // -- where it matches: the image with a heatmap from GET /explain, toggled --
  $("detail-where").addEventListener("click", async () => {
    const btn = $("detail-where"), hit = shown;
    if (btn.getAttribute("aria-pressed") === "true") {
      btn.setAttribute("aria-pressed", "false");
      $("detail-img").src = hit.image_url; $("detail-img").alt = hit.alt;
      $("detail-where-summary").textContent = "";
      return;
    }
    $("detail-where-summary").textContent = "Working out where it matches…";
    try {
      const resp = await fetch(`/explain/${hit.id}?query=${encodeURIComponent(lastQuery)}`);
      if (!resp.ok) { $("detail-where-summary").textContent = `Error: ${(await resp.json()).error}`; return; }
      const summary = resp.headers.get("X-Heatmap-Summary") || "";
      $("detail-img").src = URL.createObjectURL(await resp.blob());
      $("detail-img").alt = `${hit.alt}, lit where it matches "${lastQuery}": ${summary}`;
      $("detail-where-summary").textContent = `Where it matches "${lastQuery}": ${summary}.`;
      btn.setAttribute("aria-pressed", "true");
    } catch (err) { $("detail-where-summary").textContent = `Error: ${err}`; }
  });
})();
