// chatmesh web client — search.js: the search dialog (GET /v1/search, docs/PROTOCOL.md
// "Search"): words to find in the rooms one is in, optionally only in the room shown;
// results newest first, 20 at a time ("Older results" pages with `before`). Choosing a
// result opens its room and, when the message is loaded there, scrolls to it.
"use strict";

import { $, h, show } from "./dom.js";
import { formatTime } from "./format.js";
import { describe } from "./render.js";
import { app } from "./state.js";

const PAGE = 20;

/** The search shown: what was asked and the cursor of the next page. */
const shown = { q: "", room: null, before: null, busy: false };
let hooks = { openMessage: () => {} };

function status(text) {
  $("search-status").textContent = text;
}

function resultItem(hit) {
  const r = app.rooms.get(hit.room);
  const where = r ? r.title : `#${hit.room}`;
  const when = new Date(hit.ts);
  const button = h(
    "button",
    { type: "button", className: "search-hit", dataset: { testid: "search-hit", room: hit.room, seq: String(hit.seq) } },
    h("span", { className: "search-where", textContent: `${where} · ${hit.from} · ${formatTime(hit.ts)}`, title: when.toLocaleString() }),
    h("span", { className: "search-body", textContent: hit.body }),
  );
  button.addEventListener("click", () => {
    $("search").close();
    hooks.openMessage(hit.room, hit.seq);
  });
  return h("li", {}, button);
}

async function run(more) {
  if (shown.busy || !app.api) return;
  shown.busy = true;
  const list = $("search-results");
  $("search-more").disabled = true;
  status(more ? "Loading older results…" : "Searching…");
  try {
    const options = { limit: PAGE };
    if (shown.room) options.room = shown.room;
    if (more && shown.before) options.before = shown.before;
    const res = await app.api.call((http) => http.search(shown.q, options));
    if (!more) list.replaceChildren();
    list.append(...res.hits.map(resultItem));
    shown.before = res.next_before ?? shown.before;
    const n = list.children.length;
    status(n ? `${n} message${n === 1 ? "" : "s"} found${res.more ? "" : ", no more"}.` : res.more ? "Nothing found yet: look further back." : "Nothing found.");
    show($("search-more"), res.more);
  } catch (e) {
    status(`Search failed: ${describe(e)}`);
  } finally {
    shown.busy = false;
    $("search-more").disabled = false;
  }
}

function onSubmit(ev) {
  ev.preventDefault();
  const q = $("search-input").value.trim();
  if (!q) return;
  shown.q = q;
  shown.before = null;
  shown.room = $("search-here").checked && app.current ? app.current.id : null;
  run(false);
}

/** Opens the dialog; "Only in #room" is offered for the room shown. */
export function openSearch() {
  const dialog = $("search");
  const r = app.current;
  show($("search-here-row"), !!(r && r.member));
  $("search-here-label").textContent = r ? `Only in ${r.title}` : "";
  if (!r || !r.member) $("search-here").checked = false;
  if (!dialog.open) dialog.showModal();
  $("search-input").focus();
}

/** Wires the dialog once; `openMessage(room, seq)` shows a result in its room. */
export function initSearch(h2) {
  hooks = h2;
  const dialog = $("search");
  $("search-open").addEventListener("click", openSearch);
  $("search-close").addEventListener("click", () => dialog.close());
  $("search-form").addEventListener("submit", onSubmit);
  $("search-more").addEventListener("click", () => run(true));
  dialog.addEventListener("close", () => {
    const opener = $("search-open");
    if (!opener.hidden) opener.focus();
  });
}

/** Forgets the results (logout). */
export function resetSearch() {
  shown.q = "";
  shown.before = null;
  $("search-results").replaceChildren();
  $("search-input").value = "";
  status("");
  show($("search-more"), false);
  if ($("search").open) $("search").close();
}
