// cxr14's page: upload a film, list the model's findings, overlay the heatmap of the one chosen. No framework.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { file: null, thresholds: {}, ready: null, row: null, url: null, chosen: null, seq: 0 };
  const pct = (p) => `${(100 * p).toFixed(1)}%`;
  const pretty = (label) => label.replace(/_/g, " ");

  // One request to the API; a refusal becomes an Error carrying the server's one-line reason.
  async function api(path, options) {
    const response = await fetch(path, options);
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const reason = body && typeof body.detail === "string" ? body.detail : `the server answered ${response.status}`;
      throw new Error(reason);
    }
    return body;
  }

  function send(file, query) {
    const form = new FormData();
    form.append("file", file, file.name);
    return api(`/api/predict${query}`, { method: "POST", body: form });
  }

  function say(text, failed = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", failed);
  }

  // PNG and JPEG are shown as uploaded; anything else (DICOM) is shown as the server decoded it.
  async function browserCanShow(file) {
    const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
    const png = head[0] === 0x89 && head[1] === 0x50 && head[2] === 0x4e && head[3] === 0x47;
    const jpeg = head[0] === 0xff && head[1] === 0xd8;
    return png || jpeg;
  }

  function span(cls, text) {
    const el = document.createElement("span");
    el.className = cls;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function byProbability(row) {
    return Object.entries(row.probabilities).sort((a, b) => b[1] - a[1]);
  }

  function findingButton(label, p, called) {
    const t = state.thresholds[label];
    const button = document.createElement("button");
    button.type = "button";
    button.className = called ? "finding called" : "finding";
    button.dataset.finding = label;
    button.setAttribute("aria-pressed", "false");
    const bar = span("bar");
    bar.setAttribute("aria-hidden", "true");
    const fill = span("fill");
    fill.style.width = `${(100 * p).toFixed(2)}%`;
    bar.append(fill);
    if (t !== null && t !== undefined) {
      const mark = span("threshold");
      mark.style.left = `${(100 * t).toFixed(2)}%`;
      bar.append(mark);
    }
    const note = t === null || t === undefined ? "no threshold" : `threshold ${pct(t)}`;
    button.append(span("name", pretty(label)), span("note", called ? `${note}: called` : note),
      span("value", pct(p)), bar);
    button.setAttribute("aria-label",
      `${pretty(label)}: ${pct(p)}, ${called ? `${note}: called` : note}. Show its heatmap.`);
    button.addEventListener("click", () => showHeatmap(label));
    return button;
  }

  function showFindings(row) {
    const items = byProbability(row).map(([label, p]) => {
      const li = document.createElement("li");
      li.append(findingButton(label, p, row.findings.includes(label)));
      return li;
    });
    $("findings").replaceChildren(...items);
    $("findings").classList.toggle("greyed", Boolean(row.unusual));
    $("unusual").hidden = !row.unusual;
    $("unusual-reason").textContent = row.unusual ? `Why: ${row.reason}.` : "";
  }

  function showPicture(src, name) {
    const picture = $("picture");
    picture.src = src;
    picture.alt = `The film ${name}`;
    $("heat").hidden = true;
    $("viewer").hidden = false;
  }

  function clear() {
    $("findings").replaceChildren();
    $("unusual").hidden = true;
    $("viewer").hidden = true;
    $("viewer").removeAttribute("data-cam");
    if (state.url) URL.revokeObjectURL(state.url);
    state.url = null;
  }

  async function choose(file) {
    if (!file) return;
    const seq = ++state.seq;
    state.file = file;
    state.chosen = null;
    clear();
    say(`Scoring ${file.name}…`);
    try {
      const direct = await browserCanShow(file);
      const row = await send(file, direct ? "" : "?film=1");
      await state.ready; // the thresholds come with the model card
      if (seq !== state.seq) return; // another film was chosen meanwhile
      state.row = row;
      if (direct) state.url = URL.createObjectURL(file);
      showPicture(direct ? state.url : row.film, file.name);
      showFindings(row);
      const called = row.findings.map(pretty).join(", ");
      if (row.unusual) say(`${file.name}: unusual film, no finding called (${row.reason}).`);
      else say(`${file.name}: ${called ? `called: ${called}` : "no finding reaches its threshold"}.`);
      await showHeatmap(byProbability(row)[0][0]);
    } catch (err) {
      if (seq === state.seq) say(`${file.name}: ${err.message}`, true);
    }
  }

  async function showHeatmap(label) {
    const seq = state.seq;
    state.chosen = label;
    for (const b of document.querySelectorAll("#findings button")) {
      b.setAttribute("aria-pressed", String(b.dataset.finding === label));
    }
    $("caption").textContent = `Heatmap of ${pretty(label)}: loading…`;
    try {
      const row = await send(state.file, `?cam=${encodeURIComponent(label)}`);
      if (seq !== state.seq || state.chosen !== label) return;
      const heat = $("heat");
      heat.onload = () => {
        $("viewer").dataset.cam = label;
      };
      heat.src = row.heatmap;
      heat.hidden = false;
      $("caption").textContent = `Where the model found ${pretty(label)} (${pct(row.probabilities[label])}): ` +
        "the brighter the colour, the more that region raised this finding's score.";
    } catch (err) {
      if (seq === state.seq) $("caption").textContent = `No heatmap of ${pretty(label)}: ${err.message}`;
    }
  }

  function setOpacity() {
    const value = $("opacity").value;
    $("heat").style.opacity = String(value / 100);
    $("opacity-value").textContent = `${value}%`;
    $("opacity").setAttribute("aria-valuetext", `${value}%`);
  }

  function addRow(list, term, value) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }

  function showCard(card) {
    const list = $("card");
    list.replaceChildren();
    addRow(list, "Model", `${card.model} (${card.checkpoint}, epoch ${card.epoch ?? "?"})`);
    addRow(list, "Image size", `${card.image_size} × ${card.image_size} px, ${card.in_chans} channel(s)`);
    const test = card.test;
    if (test && typeof test.mean_auroc === "number") {
      const ci = Array.isArray(test.mean_auroc_ci) && test.mean_auroc_ci.every((v) => typeof v === "number")
        ? ` (95% CI ${test.mean_auroc_ci[0].toFixed(3)}–${test.mean_auroc_ci[1].toFixed(3)})` : "";
      const n = test.n_images ? `, ${test.n_images} images of ${test.n_patients} patients` : "";
      addRow(list, "Test mean AUROC", `${test.mean_auroc.toFixed(3)}${ci}${n}`);
    } else {
      addRow(list, "Test mean AUROC", "not known: no metrics.json beside the checkpoint");
    }
    if (typeof card.validation_mean_auroc === "number") {
      addRow(list, "Validation mean AUROC", card.validation_mean_auroc.toFixed(3));
    }
    addRow(list, "Probabilities", card.calibrated ? "calibrated on validation (temperature)" : "plain sigmoid");
    addRow(list, "Trained", card.trained);
    addRow(list, "Use", card.notice);
  }

  function watchDrops() {
    const drop = $("drop");
    for (const kind of ["dragenter", "dragover"]) {
      drop.addEventListener(kind, (e) => {
        e.preventDefault();
        drop.classList.add("over");
      });
    }
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      choose(e.dataTransfer.files[0]);
    });
    // A film dropped beside the zone must not make the browser leave the page to open it.
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
  }

  async function loadCard() {
    try {
      const card = await api("/api/model");
      state.thresholds = card.thresholds;
      showCard(card);
    } catch (err) {
      say(`The model card could not be read: ${err.message}`, true);
    }
  }

  function start() {
    $("file").addEventListener("change", (e) => {
      choose(e.target.files[0]);
      e.target.value = ""; // choosing the same file again scores it again
    });
    $("opacity").addEventListener("input", setOpacity);
    setOpacity();
    watchDrops();
    state.ready = loadCard();
  }

  start();
})();
