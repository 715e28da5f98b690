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
    $("image-row").hidden = mode === "text";
    $("weight-row").hidden = mode !== "hybrid";
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

  // the filter controls become the query language's own tokens (after:2023-06 camera:canon)
  function filterTokens() {
    return Array.from(document.querySelectorAll("#filters input"))
      .filter((i) => i.value.trim())
      .map((i) => `${i.dataset.key}:${/\s/.test(i.value.trim()) ? `"${i.value.trim()}"` : i.value.trim()}`)
      .join(" ");
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
    const url = mode === "describe" ? "/search/image-to-text" : "/search";
    try {
      const resp = await fetch(url, { method: "POST", body: page });
      const data = await resp.json();
      if (!resp.ok) { announce(`Error: ${data.error}`); return; }
      nextOffset = offset + data.hits.length;
      render(data, offset > 0);
    } catch (err) { announce(`Error: ${err}`); }
  }

  $("panel").addEventListener("submit", (e) => {
    e.preventDefault();
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
  $("more").addEventListener("click", () => { if (lastForm) runSearch(lastForm, nextOffset); });

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

  function render(data, append) {
    const grid = $("results"), texts = $("texts");
    if (!append) { grid.replaceChildren(); texts.replaceChildren(); }
    data.hits.forEach((hit) => {
      if (hit.kind === "text") {
        const li = document.createElement("li");
        li.textContent = `${hit.text} — ${hit.verdict} (score ${hit.score.toFixed(3)}, confidence ${hit.confidence.toFixed(2)})`;
        texts.append(li);
        return;
      }
      const li = document.createElement("li");
      const btn = document.createElement("button");
      btn.className = "hit"; btn.type = "button";
      btn.title = "Show why it matched";  // the name comes from the image alt text and the visible score line
      const img = document.createElement("img");
      img.src = hit.thumbnail_url; img.alt = hit.alt; img.loading = "lazy";
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = `#${hit.rank} · ${hit.verdict}`;
      meta.dataset.verdict = hit.verdict;
      btn.append(img, meta);
      btn.addEventListener("click", () => showDetail(hit));
      li.append(btn);
      grid.append(li);
    });
    const shownCount = grid.children.length + texts.children.length;
    let msg = `${shownCount} result${shownCount === 1 ? "" : "s"} of ${data.collection_size}.`;
    if (data.abstained) msg = `${data.message}. Showing the ${shownCount} closest anyway.`;
    announce(msg);
    $("status").className = data.abstained ? "abstain" : "muted";
    $("more").hidden = data.hits.length === 0 || nextOffset >= data.collection_size;
  }

  let shown = null;  // the hit in the detail view
  function showDetail(hit) {
    shown = hit;
    $("detail-img").src = hit.image_url;
    $("detail-img").alt = hit.alt;
    const sure = hit.caption_confidence == null ? "" : ` (the captioner is ${Math.round(100 * hit.caption_confidence)}% sure)`;
    $("detail-caption").textContent = hit.caption ? `Caption${sure}: ${hit.caption}` : hit.best_text || hit.path.split("/").pop();
    $("detail-verdict").textContent = `${hit.verdict}: score ${hit.score.toFixed(3)}, confidence ${hit.confidence.toFixed(2)} (the chance that this image is what you asked for)`;
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
    $("detail-where").hidden = !lastQuery;
    $("detail-where").setAttribute("aria-pressed", "false");
    $("detail-where-summary").textContent = "";
    $("detail-explain").textContent = hit.explanation;
    $("detail").showModal();
    $("detail-close").focus();
  }
  $("detail-close").addEventListener("click", () => $("detail").close());

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
