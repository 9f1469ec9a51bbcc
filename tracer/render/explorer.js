// cogtrace explorer: folding trees, search, a detail panel, zoomable diagrams, token hover,
// keyboard navigation and a print view. Vanilla JavaScript, no network, no dependencies.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("cogtrace-data").textContent);
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

  // ---- trees -------------------------------------------------------------------------------
  function setCollapsed(li, collapsed) {
    if (!li.classList.contains("leaf")) li.classList.toggle("collapsed", collapsed);
  }
  function setTree(tree, open) { $$("li", tree).forEach((li) => setCollapsed(li, !open)); }
  function restoreFolds(tree) {
    $$("li", tree).forEach((li) => setCollapsed(li, li.dataset.fold === "1"));
  }
  $$("[data-tree-action]").forEach((b) => b.addEventListener("click", () => {
    const tree = document.getElementById(b.dataset.target);
    if (b.dataset.treeAction === "expand") setTree(tree, true);
    else if (b.dataset.treeAction === "collapse") setTree(tree, false);
    else restoreFolds(tree);
  }));
  $$("ul.tree").forEach((tree) => tree.addEventListener("click", (ev) => {
    const row = ev.target.closest(".row");
    if (!row || ev.target.closest("a")) return;
    const li = row.parentElement;
    if (ev.target.classList.contains("twisty") || row.classList.contains("selected")) {
      setCollapsed(li, !li.classList.contains("collapsed"));
    }
    select(row);
  }));

  // ---- selection and the detail panel ----------------------------------------------------------
  let selected = null;
  function select(row, scroll) {
    if (selected) selected.classList.remove("selected");
    selected = row;
    row.classList.add("selected");
    if (scroll) row.scrollIntoView({ block: "nearest" });
    showDetail(row.dataset.ref);
  }
  function fact(label, value) {
    if (value === undefined || value === null || value === "" ||
        (Array.isArray(value) && !value.length)) return "";
    return `<dt>${esc(label)}</dt><dd>${value}</dd>`;
  }
  function code(v) { return `<code>${esc(v)}</code>`; }
  function kv(obj) {
    const keys = Object.keys(obj || {});
    if (!keys.length) return "";
    return "<table>" + keys.map((k) => `<tr><td>${esc(k)}</td><td><code>${esc(obj[k])}</code></td></tr>`).join("") +
      "</table>";
  }
  function hookTable(before, after) {
    if (!before && !after) return "";
    const hooks = Array.from(new Set(Object.keys(before || {}).concat(Object.keys(after || {})))).sort();
    const rows = hooks.map((h) => {
      const b = (before || {})[h] || "default", a = (after || {})[h] || "default";
      return `<tr class="${a !== b ? "changed" : ""}"><td>${esc(h)}</td><td>${esc(b)}</td><td>${esc(a)}</td></tr>`;
    });
    return "<table><tr><th>hook</th><th>before</th><th>after</th></tr>" + rows.join("") + "</table>";
  }
  function source(src) {
    if (!src) return "";
    const link = src.vscode ? ` <a href="${esc(src.vscode)}" title="open in VS Code">open in VS Code</a>` : "";
    return code(src.text) + link;
  }
  function detailHtml(d) {
    let h = `<h3>${esc(d.title)}</h3><div class="tag cls">${esc(d.kind)}</div><dl>`;
    h += fact("source", source(d.source));
    h += fact("defined at", d.defined_at ? code(d.defined_at) : "");
    h += fact("arguments", kv(d.args));
    for (const [name, ns] of Object.entries(d.namespaces || {})) h += fact(`Namespace ${name} (differs from defaults)`, kv(ns));
    h += fact("result", d.result ? code(d.result) : "");
    h += fact("parameters", d.params ? esc(d.params) : "");
    h += fact("hook table before → after", hookTable(d.hooks_before, d.hooks_after));
    h += fact("served by", d.served_by ? code(d.served_by) + (d.mixin_class ? " (" + esc(d.mixin_class) + ")" : "") : "");
    h += fact("runs for", d.layer_path ? code(d.layer_path) : "");
    h += fact("weights used", (d.weights || []).map(code).join("<br>"));
    h += fact("inputs", d.inputs ? code(d.inputs) : "");
    h += fact("outputs", d.outputs ? code(d.outputs) : "");
    h += fact("keyword tensors", kv(d.kwargs));
    h += fact("expert split", d.branch ? kv(d.branch) : "");
    h += fact("parameter shapes", kv(d.param_shapes));
    h += fact("calls", d.calls ? esc(d.calls) : "");
    h += fact("hook dispatches here", (d.dispatches || []).map(esc).join("<br>"));
    h += fact("error", d.error ? `<span class="err">${esc(d.error)}</span>` : "");
    h += fact("time", d.time ? esc(d.time) : "");
    return h + "</dl>";
  }
  function showDetail(ref) {
    const panel = document.getElementById("detail");
    if (!panel || !ref) return;
    panel.dataset.ref = ref;
    const refs = ref.split(" ");
    const parts = refs.map((r) => DATA.details[r]).filter(Boolean);
    if (!parts.length) { panel.innerHTML = '<p class="empty">No details recorded for this row.</p>'; return; }
    if (parts.length === 2) {
      panel.innerHTML = `<div class="tag">A</div>${detailHtml(parts[0])}<hr><div class="tag">B</div>${detailHtml(parts[1])}`;
    } else {
      panel.innerHTML = (refs[0].startsWith("b:") ? '<div class="tag">B</div>' : refs[0].startsWith("a:") ?
        '<div class="tag">A</div>' : "") + detailHtml(parts[0]);
    }
  }
  $$("tr[data-ref], .tok[data-ref]").forEach((el) => el.addEventListener("click", () => {
    $$(".row.selected, tr.selected").forEach((r) => r.classList.remove("selected"));
    el.classList.add("selected");
    showDetail(el.dataset.ref);
  }));

  // ---- search ------------------------------------------------------------------------------------
  const input = document.getElementById("search");
  const hits = document.getElementById("hits");
  function search(q) {
    q = q.trim().toLowerCase();
    let count = 0;
    $$("ul.tree").forEach((tree) => {
      if (!q) {
        $$("li", tree).forEach((li) => { li.classList.remove("hidden"); $(".row", li).classList.remove("match"); });
        restoreFolds(tree);
        return;
      }
      // post-order: a node stays visible when it or a descendant matches; matches open their ancestors
      const visit = (li) => {
        const row = li.firstElementChild;
        const own = (row.dataset.search || row.textContent).toLowerCase().includes(q);
        let inner = false;
        const ul = li.querySelector(":scope > ul");
        if (ul) for (const child of ul.children) inner = visit(child) || inner;
        row.classList.toggle("match", own);
        if (own) count++;
        li.classList.toggle("hidden", !own && !inner);
        if (inner) setCollapsed(li, false);
        return own || inner;
      };
      for (const li of tree.children) visit(li);
    });
    $$("table.filterable tbody tr").forEach((tr) => {
      if (tr.classList.contains("foldrow")) return;
      const own = !q || (tr.dataset.search || tr.textContent).toLowerCase().includes(q);
      tr.classList.toggle("hidden", !own);
      if (q && own) { count++; const tb = tr.closest("tbody.same"); if (tb) tb.classList.remove("collapsed"); }
    });
    $$(".strip .tok").forEach((t) => t.classList.toggle("hl", !!q && (t.dataset.search || "").toLowerCase().includes(q)));
    if (hits) hits.textContent = q ? `${count} match${count === 1 ? "" : "es"}` : "";
    return count;
  }
  let timer = 0;
  if (input) input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => search(input.value), 120); });
  window.cogtraceSearch = (q) => { if (input) input.value = q; return search(q); };

  // ---- folded runs of unchanged rows (diff) -----------------------------------------------------------
  $$("tr.foldrow").forEach((tr) => tr.addEventListener("click", () => tr.closest("tbody").classList.toggle("collapsed")));

  // ---- keyboard: / search, Esc clear, ↑↓ (j k) move, → ← (l h) unfold/fold, Enter details ---------------
  function visibleRows() {
    return $$("ul.tree .row").filter((r) => r.offsetParent !== null);
  }
  document.addEventListener("keydown", (ev) => {
    const typing = ev.target instanceof HTMLInputElement;
    if (ev.key === "/" && !typing) { ev.preventDefault(); input && input.focus(); return; }
    if (ev.key === "Escape") {
      if (typing) { input.value = ""; search(""); input.blur(); }
      return;
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const rows = visibleRows();
    if (!rows.length) return;
    let i = selected ? rows.indexOf(selected) : -1;
    const li = selected ? selected.parentElement : null;
    switch (ev.key) {
      case "ArrowDown": case "j": i = Math.min(rows.length - 1, i + 1); break;
      case "ArrowUp": case "k": i = Math.max(0, i - 1); break;
      case "ArrowRight": case "l": if (li) setCollapsed(li, false); return ev.preventDefault();
      case "ArrowLeft": case "h":
        if (li && !li.classList.contains("leaf") && !li.classList.contains("collapsed")) setCollapsed(li, true);
        else if (li && li.parentElement.closest("li")) select(li.parentElement.closest("li").firstElementChild, true);
        return ev.preventDefault();
      case "Enter": if (selected) showDetail(selected.dataset.ref); return;
      default: return;
    }
    ev.preventDefault();
    select(rows[Math.max(0, i)], true);
  });

  // ---- diagrams: fit the window, zoom, pan, node -> rows -------------------------------------------
  $$(".diagram").forEach((box) => {
    const svg = $("svg", box);
    if (!svg) return;
    const vb = svg.viewBox.baseVal;
    const full = { x: vb.x, y: vb.y, w: vb.width, h: vb.height };
    let view = Object.assign({}, full);
    const apply = () => svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
    const fitHeight = () => {
      const width = box.clientWidth || 800;
      const natural = width * full.h / full.w;
      box.style.height = Math.max(160, Math.min(natural, window.innerHeight * 0.72)) + "px";
    };
    const fit = () => { view = Object.assign({}, full); fitHeight(); apply(); };
    const zoom = (factor, cx, cy) => {
      const nw = Math.min(full.w * 4, Math.max(full.w / 40, view.w * factor));
      const nh = view.h * nw / view.w;
      view.x = cx - (cx - view.x) * nw / view.w;
      view.y = cy - (cy - view.y) * nh / view.h;
      view.w = nw; view.h = nh; apply();
    };
    const toSvg = (ev) => {
      const r = svg.getBoundingClientRect();
      const scale = Math.max(view.w / r.width, view.h / r.height);
      const ox = (r.width * scale - view.w) / 2, oy = (r.height * scale - view.h) / 2;
      return { x: view.x - ox + (ev.clientX - r.left) * scale, y: view.y - oy + (ev.clientY - r.top) * scale, scale };
    };
    const controls = document.createElement("div");
    controls.className = "controls";
    controls.innerHTML = '<button data-z="in" title="zoom in">+</button><button data-z="out" title="zoom out">−</button>' +
      '<button data-z="fit" title="fit the window">fit</button>';
    box.appendChild(controls);
    controls.addEventListener("click", (ev) => {
      const z = ev.target.dataset && ev.target.dataset.z;
      const c = { x: view.x + view.w / 2, y: view.y + view.h / 2 };
      if (z === "in") zoom(0.8, c.x, c.y); else if (z === "out") zoom(1.25, c.x, c.y); else if (z === "fit") fit();
      ev.stopPropagation();
    });
    box.addEventListener("wheel", (ev) => {
      if (!ev.ctrlKey && !ev.metaKey && !box.matches(":focus-within, .active")) return;
      ev.preventDefault();
      const p = toSvg(ev);
      zoom(ev.deltaY > 0 ? 1.15 : 0.87, p.x, p.y);
    }, { passive: false });
    let drag = null, moved = false;
    box.addEventListener("pointerdown", (ev) => {
      if (ev.target.closest(".controls")) return;
      box.classList.add("active");
      drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, s: toSvg(ev).scale };
      moved = false;
    });
    window.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { moved = true; box.classList.add("dragging"); }
      view.x = drag.vx - dx * drag.s; view.y = drag.vy - dy * drag.s; apply();
    });
    window.addEventListener("pointerup", () => { drag = null; box.classList.remove("dragging"); });
    document.addEventListener("pointerdown", (ev) => { if (!box.contains(ev.target)) box.classList.remove("active"); });
    $$("g.node", svg).forEach((g) => g.addEventListener("click", (ev) => {
      if (moved) return;
      ev.preventDefault();
      linkNode(g);
    }));
    window.addEventListener("resize", fitHeight);
    box.cogtraceFit = fit;
    fit();
  });
  function linkNode(g) {
    $$("g.node.linked").forEach((n) => n.classList.remove("linked"));
    g.classList.add("linked");
    const title = ($("title", g) || {}).textContent || "";
    const anchor = $("a", g);
    const tip = anchor ? (anchor.getAttribute("xlink:title") || anchor.getAttribute("title") || "") : "";
    let row = null;
    const order = /^c(\d+)$/.exec(title);
    if (order) row = $(`.row[data-order="${order[1]}"]`);
    if (!row && tip) row = $(`.row[data-path="${CSS.escape(tip)}"]`) || $(`.row[data-path="${CSS.escape(tip.split(/[\s\n]/)[0])}"]`);
    if (!row) {  // the first module path the node's text names, else search its first line
      const text = $$("text", g).map((t) => t.textContent).join(" ");
      for (const word of text.split(/[\s(),]+/)) {
        const r = $(`.row[data-path="${CSS.escape(word.replace(/\.(N|\*)(?=\.|$)/g, ".0"))}"]`);
        if (r) { row = r; break; }
      }
      if (!row) { window.cogtraceSearch(($$("text", g)[0] || {}).textContent || title); return; }
    }
    let li = row.parentElement.parentElement.closest("li");
    while (li) { setCollapsed(li, false); li.classList.remove("hidden"); li = li.parentElement.closest("li"); }
    select(row, true);
  }

  // ---- token strip hover ---------------------------------------------------------------------------
  const tip = document.getElementById("tip");
  $$(".strip .tok").forEach((t) => {
    t.addEventListener("mouseenter", () => { tip.textContent = t.dataset.tip; tip.style.display = "block"; });
    t.addEventListener("mousemove", (ev) => {
      tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - 370) + "px"; tip.style.top = (ev.clientY + 14) + "px";
    });
    t.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  });

  // ---- print: everything unfolded, restored afterwards --------------------------------------------
  let saved = null;
  window.addEventListener("beforeprint", () => {
    saved = $$("li.collapsed, tbody.collapsed, details:not([open])");
    saved.forEach((el) => el.tagName === "DETAILS" ? (el.open = true) : el.classList.remove("collapsed"));
  });
  window.addEventListener("afterprint", () => {
    (saved || []).forEach((el) => el.tagName === "DETAILS" ? (el.open = false) : el.classList.add("collapsed"));
    saved = null;
  });
  document.documentElement.dataset.ready = "1";
  if (window.performance && performance.mark) performance.mark("cogtrace-ready");  // read by the benchmark
})();
