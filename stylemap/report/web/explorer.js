// The explorer page's script: regl-scatterplot (WebGL) draws every point of the map all shareable platforms share;
// this file adds the platform and style filters, colouring by style or platform, the hover card, the prompt search,
// density contours and region labels (d3-contour), thumbnails on the map, and the selection panel (a lasso, or the
// search hits: counted, compared, exported as CSV or parquet). esbuild bundles it with the libraries into
// dist/explorer.js (.ci/setup), and the map stage copies that file beside the page with the data files it writes
// (stylemap/report/explorer.py). Data is fetched, so the page needs http (`stylemap serve`); a failed load is shown,
// never a blank page.
import { contours } from "d3-contour";
import { scaleLinear } from "d3-scale";
import { parquetWriteBuffer } from "hyparquet-writer";
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
  const [xy, top, prob, plat, details, regions] = await Promise.all([
    fetchArray("xy.f32", Float32Array, 2 * meta.n),
    fetchArray("top.u8", Uint8Array, meta.k * meta.n),
    fetchArray("prob.u8", Uint8Array, meta.k * meta.n),
    fetchArray("plat.u8", Uint8Array, meta.n),
    fetchFile("details.json").then((r) => r.json()),
    fetchFile("regions.json").then((r) => r.json()),
  ]);
  return { meta, xy, top, prob, plat, details, regions };
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

/** Checkboxes for `names` with their colours and counts into `container`; each toggles active[c], then onChange. */
function checkboxes(container, names, colors, counts, active, onChange) {
  const boxes = [];
  names.forEach((name, c) => {
    if (!counts[c]) return;
    const label = element("label"), box = element("input");
    box.type = "checkbox"; box.checked = active[c]; box.dataset.index = c;
    box.addEventListener("change", () => { active[c] = box.checked; onChange(); });
    label.append(box, swatch(colors[c]), element("span", "", `${name} (${counts[c]})`));
    container.append(label);
    boxes.push(box);
  });
  return boxes;
}

/** Rows of a small table: [cells...] as text. */
function table(head, rows) {
  const node = element("table");
  const tr = element("tr");
  head.forEach((h) => tr.append(element("th", "", h)));
  node.append(tr);
  rows.forEach((cells) => {
    const row = element("tr");
    cells.forEach((cell) => row.append(element("td", "", cell)));
    node.append(row);
  });
  return node;
}

const percent = (part, whole) => (whole ? `${((100 * part) / whole).toFixed(1)}%` : "-");

function csvCell(value) {
  const text = String(value ?? "");
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

const SVG = "http://www.w3.org/2000/svg";

/** Whether data point (x, y) is on the canvas the view's scales map to. */
function onCanvas({ xScale, yScale }, x, y) {
  const [left, right] = xScale.range(), [bottom, top] = yScale.range(), px = xScale(x), py = yScale(y);
  return px >= left && px <= right && py >= Math.min(top, bottom) && py <= Math.max(top, bottom);
}

const MAX_THUMBS = 48;  // thumbnails on screen at once, whatever the zoom: the frame time stays bounded
const THUMB_ZOOM = 4;  // from this zoom on, the visible points' own thumbnails; below it, one per region's peak
const THUMB_PX = 56;

/** Thumbnails over the map, loaded only when shown (files beside the page, never embedded): zoomed out, the image
 *  nearest each labelled region's peak; zoomed in, the visible points nearest the centre of the view, at most
 *  MAX_THUMBS. An <img> is kept while its point stays wanted, so panning moves images instead of reloading them. */
function thumbLayer(layer, x, y, details, isShown, regions) {
  const withThumb = details.index.filter((i, row) => details.thumb[row]);
  const nearest = (px, py) => {
    let best = -1, bestD = Infinity;
    for (const i of withThumb) {
      const d = (x[i] - px) ** 2 + (y[i] - py) ** 2;
      if (d < bestD && isShown(i)) { best = i; bestD = d; }
    }
    return best;
  };
  const shown = new Map();
  return (view, zoom, level) => {
    const { xScale, yScale } = view;
    const [left, right] = xScale.range(), [bottom, top] = yScale.range();
    const inView = (i) => onCanvas(view, x[i], y[i]);
    let wanted;
    if (zoom >= THUMB_ZOOM) {
      const cx = (left + right) / 2, cy = (top + bottom) / 2;
      wanted = withThumb.filter((i) => isShown(i) && inView(i))
        .sort((a, b) => (xScale(x[a]) - cx) ** 2 + (yScale(y[a]) - cy) ** 2 - (xScale(x[b]) - cx) ** 2 - (yScale(y[b]) - cy) ** 2)
        .slice(0, MAX_THUMBS);
    } else {
      wanted = [...new Set(regions.filter((r) => r.level === level).map((r) => nearest(r.x, r.y)))]
        .filter((i) => i >= 0 && inView(i)).slice(0, MAX_THUMBS);
    }
    const keep = new Set(wanted);
    for (const [i, img] of shown) if (!keep.has(i)) { img.remove(); shown.delete(i); }
    for (const i of wanted) {
      let img = shown.get(i);
      if (!img) {
        img = element("img");
        img.src = `thumbs/${i}.jpg`;
        img.alt = "";
        img.dataset.point = i;
        layer.append(img);
        shown.set(i, img);
      }
      img.style.left = `${xScale(x[i]) - THUMB_PX / 2}px`;
      img.style.top = `${yScale(y[i]) - THUMB_PX / 2}px`;
    }
    document.body.dataset.thumbs = shown.size;
  };
}

/** Density contours (d3-contour on the map's density grid, drawn in the data square) and region labels, redrawn on
 *  every view change; the labels of one level at a time: broad regions zoomed out, finer ones zoomed in. */
function regionLayer(regions, overlay) {
  const { grid, levels, density } = regions;
  const rings = grid ? contours().size([grid, grid]).thresholds(levels.map((l) => l * 255))(density) : [];
  const toSquare = (v) => -1 + (2 * v) / grid;
  return (view, zoom, level) => {
    const { xScale, yScale } = view;
    const paths = rings.map((contour, i) => {
      const d = contour.coordinates.map((polygon) => polygon.map((ring) => "M" + ring.map(([gx, gy]) =>
        `${xScale(toSquare(gx)).toFixed(1)},${yScale(toSquare(gy)).toFixed(1)}`).join("L") + "Z").join("")).join("");
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", d);
      path.setAttribute("class", `contour level${i}`);
      return path;
    });
    const [left, right] = xScale.range();
    const labels = regions.regions.filter((r) => r.level === level && onCanvas(view, r.x, r.y)).map((r) => {
      const text = document.createElementNS(SVG, "text");
      const x = Math.min(Math.max(xScale(r.x), left + 90), right - 90).toFixed(1);  // its text kept on screen
      text.setAttribute("class", "region");
      text.setAttribute("y", (yScale(r.y) - THUMB_PX / 2 - 20).toFixed(1));  // above the peak's thumbnail
      const lines = [r.styles.map(([name, share]) => `${name} ${Math.round(100 * share)}%`).join(" · ")];
      if (r.words.length) lines.push(r.words.join(", "));
      lines.forEach((line, i) => {
        const span = document.createElementNS(SVG, "tspan");
        span.setAttribute("x", x);
        span.setAttribute("dy", i ? "1.2em" : "0");
        span.textContent = line;
        text.append(span);
      });
      return text;
    });
    overlay.replaceChildren(...paths, ...labels);
    document.body.dataset.regionLevel = level;
    document.body.dataset.regionLabels = labels.length;
  };
}

/** The view's zoom (1 at the start) and the region level it shows. */
function zoomLevel(xScale, levels) {
  const zoom = 2 / (xScale.domain()[1] - xScale.domain()[0]);
  return [zoom, Math.min(Math.max(levels.length - 1, 0), Math.max(0, Math.floor(Math.log2(Math.max(zoom, 1) * 1.5))))];
}

async function start({ meta, xy, top, prob, plat, details, regions }) {
  const { n, k, classes, colors, platforms } = meta;
  const platformColors = meta.platform_colors;
  const { x, y } = normalised(xy, n, meta.bounds);
  const top1 = new Uint8Array(n), counts = classes.map(() => 0), perPlatform = platforms.map(() => 0);
  for (let i = 0; i < n; i++) { top1[i] = top[i * k]; counts[top1[i]]++; perPlatform[plat[i]]++; }
  const detailRow = new Map(details.index.map((i, row) => [i, row]));

  const scatterplot = createScatterplot({
    canvas: $("map"), backgroundColor: "#ffffff", pointColor: colors, colorBy: "valueA",
    xScale: scaleLinear().domain([-1, 1]), yScale: scaleLinear().domain([-1, 1]),  // data space = the drawing square
    pointSize: n > 500000 ? 1 : n > 50000 ? 2 : n > 5000 ? 3 : 5, opacity: n > 200000 ? 0.6 : 1, opacityInactiveScale: 0.25,
  });
  window.explorer = scatterplot;  // for tests and bench/bench_map.py

  // Deep links: ?platform=a,b and ?styles=a,b show only those, ?color=platform colours by platform, ?q= searches.
  const wanted = (key, names) => (query.has(key) ? names.map((name) => query.get(key).split(",").includes(name))
    : names.map(() => true));
  const active = wanted("styles", classes), activePlatform = wanted("platform", platforms);
  const status = $("status"), card = $("card"), main = $("main");
  const heading = platforms.filter((_, p) => activePlatform[p]).join(" + ") || "no platform";
  document.title = `stylemap: ${heading}`;
  $("heading").textContent = heading;

  const everything = () => active.every(Boolean) && activePlatform.every(Boolean);
  const isShown = (i) => active[top1[i]] && activePlatform[plat[i]];
  function visible() {
    const keep = [];
    for (let i = 0; i < n; i++) if (isShown(i)) keep.push(i);
    return keep;
  }
  function report() {
    const count = everything() ? n : scatterplot.get("filteredPoints").length;
    document.body.dataset.pointsDrawn = count;
    status.textContent = `${count} of ${n} points shown`;
  }
  let refreshThumbs = () => {};  // set once the layers exist: a filter changes which thumbnails are wanted
  async function applyFilter() {
    await (everything() ? scatterplot.unfilter() : scatterplot.filter(visible()));
    search($("search").value);
    report();
    refreshThumbs();
  }

  const boxes = checkboxes($("filters"), classes, colors, counts, active, applyFilter);
  checkboxes($("platforms"), platforms, platformColors, perPlatform, activePlatform, applyFilter);
  const setAll = (on) => { active.fill(on); boxes.forEach((box) => { box.checked = on; }); applyFilter(); };
  $("all").onclick = () => setAll(true);
  $("none").onclick = () => setAll(false);
  function colourBy(what) {
    scatterplot.set(what === "platform" ? { colorBy: "valueB", pointColor: platformColors }
      : { colorBy: "valueA", pointColor: colors });
    document.body.dataset.colorBy = what;
  }
  $("colorby").value = query.get("color") === "platform" ? "platform" : "style";
  $("colorby").addEventListener("change", (e) => colourBy(e.target.value));

  // The selection (a lasso: shift + drag; or the search's hits): its size, its style shares beside those of its
  // platforms' shown points, its platform mix, and its rows as CSV or parquet (hyparquet-writer).
  let selected = [];
  function showSelection(points) {
    selected = points.filter(isShown);
    const panel = $("selection");
    document.body.dataset.selected = selected.length;
    panel.hidden = !selected.length;
    if (!selected.length) return;
    const inSel = classes.map(() => 0), mix = platforms.map(() => 0), base = classes.map(() => 0);
    selected.forEach((i) => { inSel[top1[i]]++; mix[plat[i]]++; });
    let baseTotal = 0;
    for (let i = 0; i < n; i++) if (mix[plat[i]] && isShown(i)) { base[top1[i]]++; baseTotal++; }
    const styleRows = classes.map((name, c) => [name, percent(inSel[c], selected.length), percent(base[c], baseTotal)])
      .filter((_, c) => inSel[c] || base[c]);
    $("selection-body").replaceChildren(
      element("div", "", `${selected.length} selected`),
      table(["style", "selection", "its platforms"], styleRows),
      table(["platform", "points"], platforms.map((name, p) => [name, String(mix[p])]).filter((_, p) => mix[p])));
  }
  let ids = null;
  /** The selection's rows as named columns: image id, platform, top-k styles and probabilities, prompt. */
  async function selectionColumns() {
    ids = ids || await (await fetchFile("ids.json")).json();
    const columns = [["image_id", "STRING", selected.map((i) => ids[i])],
      ["platform", "STRING", selected.map((i) => platforms[plat[i]])]];
    for (let r = 0; r < k; r++) {
      columns.push([`style_${r + 1}`, "STRING", selected.map((i) => classes[top[i * k + r]])],
        [`prob_${r + 1}`, "DOUBLE", selected.map((i) => Math.round((1000 * prob[i * k + r]) / 255) / 1000)]);
    }
    columns.push(["prompt", "STRING", selected.map((i) => (detailRow.has(i) ? details.prompt[detailRow.get(i)] : ""))]);
    return columns;
  }
  function download(parts, type, name) {
    const link = element("a");
    link.href = URL.createObjectURL(new Blob(parts, { type }));
    link.download = name;
    link.click();
  }
  $("export").onclick = async () => {
    const columns = await selectionColumns();
    const lines = [columns.map(([name]) => name).join(",")];
    selected.forEach((_, row) => lines.push(columns.map(([, , data]) => csvCell(data[row])).join(",")));
    download([lines.join("\n") + "\n"], "text/csv", "stylemap-selection.csv");
  };
  $("export-parquet").onclick = async () => {
    const columnData = (await selectionColumns()).map(([name, type, data]) => ({ name, type, data }));
    download([parquetWriteBuffer({ columnData })], "application/vnd.apache.parquet", "stylemap-selection.parquet");
  };
  scatterplot.subscribe("select", ({ points }) => showSelection(points));
  scatterplot.subscribe("deselect", () => showSelection([]));

  const prompts = details.prompt.map((p) => p.toLowerCase());
  let searched = false;  // whether the selection is the search's hits
  function search(text) {
    const needle = text.trim().toLowerCase();
    const hits = [];
    if (needle) prompts.forEach((p, row) => { if (p.includes(needle) && isShown(details.index[row])) hits.push(details.index[row]); });
    if (hits.length) scatterplot.select(hits);
    else if (needle || searched) scatterplot.deselect();  // a lasso selection outlives an empty search box
    searched = hits.length > 0;
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
    card.append(element("div", "id", `${platforms[plat[i]]} · ${row !== undefined ? details.id[row] : `point ${i}`}`));
    const [px, py] = scatterplot.getScreenPosition(i);
    card.style.left = `${Math.min(px + 12, main.clientWidth - 310)}px`;
    card.style.top = `${Math.min(py + 12, main.clientHeight - 220)}px`;
    card.style.display = "block";
    document.body.dataset.card = i;
  });
  scatterplot.subscribe("pointout", () => { card.style.display = "none"; delete document.body.dataset.card; });

  const filter = everything() ? undefined : visible();
  await scatterplot.draw({ x, y, z: top1, w: plat }, { zDataType: "categorical", wDataType: "categorical", filter });
  colourBy($("colorby").value);
  const drawRegions = regionLayer(regions, $("regions"));
  const drawThumbs = thumbLayer($("thumbs"), x, y, details, isShown, regions.regions);
  const onView = (view) => {
    const [zoom, level] = zoomLevel(view.xScale, regions.levels);
    drawRegions(view, zoom, level);
    drawThumbs(view, zoom, level);
  };
  scatterplot.subscribe("view", onView);
  onView({ xScale: scatterplot.get("xScale"), yScale: scatterplot.get("yScale") });
  refreshThumbs = () => onView({ xScale: scatterplot.get("xScale"), yScale: scatterplot.get("yScale") });
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
