// The explorer page's script: regl-scatterplot (WebGL) draws every point; this file adds the style filter, the
// hover card and the prompt search. esbuild bundles it with the library into dist/explorer.js (.ci/setup), and the
// map stage copies that file beside each page with the data files it writes (stylemap/report/explorer.py).
// Data is fetched, so the page needs http (`stylemap serve`); a failed load is shown, never a blank page.
import createScatterplot from "regl-scatterplot";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);

async function fetchFile(name) {
  const response = await fetch(name);
  if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
  return response;
}

async function fetchArray(name, Type, length) {
  const array = new Type(await (await fetchFile(name)).arrayBuffer());
  if (array.length !== length) throw new Error(`${name} holds ${array.length} values, expected ${length}`);
  return array;
}

async function load() {
  const meta = await (await fetchFile("meta.json")).json();
  const [xy, top, prob, details] = await Promise.all([
    fetchArray("xy.f32", Float32Array, 2 * meta.n),
    fetchArray("top.u8", Uint8Array, meta.k * meta.n),
    fetchArray("prob.u8", Uint8Array, meta.k * meta.n),
    fetchFile("details.json").then((r) => r.json()),
  ]);
  return { meta, xy, top, prob, details };
}

/** The layout centred and scaled into [-1, 1], the coordinates regl-scatterplot draws, aspect ratio kept; framed
 *  by `bounds` (the map every platform shares) when given, so each platform's page puts a region at one place. */
function normalised(xy, n, bounds) {
  let [xmin, xmax, ymin, ymax] = bounds || [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; !bounds && i < n; i++) {
    xmin = Math.min(xmin, xy[2 * i]); xmax = Math.max(xmax, xy[2 * i]);
    ymin = Math.min(ymin, xy[2 * i + 1]); ymax = Math.max(ymax, xy[2 * i + 1]);
  }
  const half = (Math.max(xmax - xmin, ymax - ymin) / 2) * 1.05 || 1;
  const x = new Float32Array(n), y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = (xy[2 * i] - (xmin + xmax) / 2) / half;
    y[i] = (xy[2 * i + 1] - (ymin + ymax) / 2) / half;
  }
  return { x, y };
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;  // text, never HTML: prompts are user input
  return node;
}

function swatch(color) {
  const node = element("span", "swatch");
  node.style.background = color;
  return node;
}

async function start({ meta, xy, top, prob, details }) {
  const { n, k, classes, colors } = meta;
  document.title = `stylemap: ${meta.platform}`;
  $("heading").textContent = meta.platform;
  const { x, y } = normalised(xy, n, meta.bounds);
  const top1 = new Uint8Array(n), counts = classes.map(() => 0);
  for (let i = 0; i < n; i++) { top1[i] = top[i * k]; counts[top1[i]]++; }
  const detailRow = new Map(details.index.map((i, row) => [i, row]));

  const scatterplot = createScatterplot({
    canvas: $("map"), backgroundColor: "#ffffff", pointColor: colors, colorBy: "valueA",
    pointSize: n > 500000 ? 1 : n > 50000 ? 2 : n > 5000 ? 3 : 5, opacity: n > 200000 ? 0.6 : 1, opacityInactiveScale: 0.25,
  });
  window.explorer = scatterplot;  // for tests and bench/bench_map.py

  const active = classes.map(() => true);
  const status = $("status"), card = $("card"), main = $("main");

  function shown() {
    return active.every(Boolean) ? n : scatterplot.get("filteredPoints").length;
  }
  function visible() {
    const keep = [];
    for (let i = 0; i < n; i++) if (active[top1[i]]) keep.push(i);
    return keep;
  }
  function report() {
    const count = shown();
    document.body.dataset.pointsDrawn = count;
    status.textContent = `${count} of ${n} points shown`;
  }
  async function applyFilter() {
    await (active.every(Boolean) ? scatterplot.unfilter() : scatterplot.filter(visible()));
    search($("search").value);
    report();
  }

  const boxes = [];
  classes.forEach((name, c) => {
    if (!counts[c]) return;
    const label = element("label"), box = element("input");
    box.type = "checkbox"; box.checked = true; box.dataset.class = c;
    box.addEventListener("change", () => { active[c] = box.checked; applyFilter(); });
    label.append(box, swatch(colors[c]), element("span", "", `${name} (${counts[c]})`));
    $("filters").append(label);
    boxes.push(box);
  });
  const setAll = (on) => { active.fill(on); boxes.forEach((box) => { box.checked = on; }); applyFilter(); };
  $("all").onclick = () => setAll(true);
  $("none").onclick = () => setAll(false);

  const prompts = details.prompt.map((p) => p.toLowerCase());
  function search(text) {
    const needle = text.trim().toLowerCase();
    const hits = [];
    if (needle) prompts.forEach((p, row) => { if (p.includes(needle) && active[top1[details.index[row]]]) hits.push(details.index[row]); });
    if (hits.length) scatterplot.select(hits); else scatterplot.deselect();
    $("matches").textContent = needle ? ` ${hits.length} of ${prompts.length} prompts match` : "";
    document.body.dataset.searchMatches = scatterplot.get("selectedPoints").length;
  }
  $("search").addEventListener("input", (e) => search(e.target.value));

  scatterplot.subscribe("pointover", (i) => {
    const row = detailRow.get(i);
    card.replaceChildren();
    if (row !== undefined && details.thumb[row]) {
      const img = element("img");
      img.src = `thumbs/${i}.jpg`;  // fetched only now: thumbnails are files beside the page
      img.alt = "";
      card.append(img);
    }
    if (row !== undefined) card.append(element("div", "prompt", details.prompt[row]));
    for (let r = 0; r < k; r++) {
      const c = top[i * k + r], line = element("div");
      line.append(swatch(colors[c]), ` ${classes[c]} ${(prob[i * k + r] / 255).toFixed(2)}`);
      card.append(line);
    }
    card.append(element("div", "id", row !== undefined ? details.id[row] : `point ${i}`));
    const [px, py] = scatterplot.getScreenPosition(i);
    card.style.left = `${Math.min(px + 12, main.clientWidth - 310)}px`;
    card.style.top = `${Math.min(py + 12, main.clientHeight - 220)}px`;
    card.style.display = "block";
    document.body.dataset.card = i;
  });
  scatterplot.subscribe("pointout", () => { card.style.display = "none"; delete document.body.dataset.card; });

  // Deep links: ?styles=a,b shows only those styles, ?q=text searches the prompts.
  if (query.has("styles")) {
    const wanted = query.get("styles").split(",");
    classes.forEach((name, c) => { active[c] = wanted.includes(name); });
    boxes.forEach((box) => { box.checked = active[+box.dataset.class]; });
  }
  const filter = active.every(Boolean) ? undefined : visible();
  await scatterplot.draw({ x, y, z: top1 }, { zDataType: "categorical", filter });
  $("search").value = query.get("q") || "";
  search($("search").value);
  report();
  document.body.dataset.firstRenderMs = Math.round(performance.now());  // since navigation start
}

load().then(start).catch((error) => {
  const status = $("status");
  status.className = "error";
  status.textContent = `The map could not be shown: ${error.message || error}.\n` +
    "This page fetches its data files, so it needs http: run `stylemap serve` in the project and follow " +
    "the report's map link (a file:// URL cannot fetch).";
  console.error(`explorer: ${error.message || error}`);
});
