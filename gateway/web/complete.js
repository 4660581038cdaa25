// chatmesh web client — complete.js: completes `@name` in the composer from the room's members
// (and `@room`), as the server recognises mentions (docs/PROTOCOL.md "Mentions"): typing `@`
// and the start of a name or display name lists up to 8 members; ↑/↓ choose, Enter or Tab
// takes one, Esc closes the list. The textarea (a textbox: HTML allows it no other role)
// controls the list and points at the chosen option with aria-activedescendant, so screen
// readers announce it.
"use strict";

import { $, h, show } from "./dom.js";
import { app } from "./state.js";

const MAX_SHOWN = 8;
/** `@` at the start or after a character no name has, then a partial name, up to the caret. */
const AT_CARET = /(?:^|[^A-Za-z0-9_@-])@([A-Za-z0-9_-]{0,64})$/;

const state = { open: false, items: [], active: 0, start: 0, end: 0 };

/** The members (and `@room`) whose name or display name starts with `prefix`. */
function candidates(r, prefix) {
  const me = app.session && app.session.user;
  const p = prefix.toLowerCase();
  const seen = new Set();
  const out = [];
  const consider = (user, display) => {
    if (!user || user === me || seen.has(user)) return;
    const shown = display || app.names.get(user) || "";
    if (!user.toLowerCase().startsWith(p) && !shown.toLowerCase().split(/\s+/).some((w) => w.startsWith(p))) return;
    seen.add(user);
    out.push({ user, display: shown });
  };
  for (const m of r.members || []) consider(m.user, m.display_name);
  for (const u of r.online || []) consider(u, "");
  out.sort((a, b) => a.user.localeCompare(b.user));
  if (r.kind !== "dm" && "room".startsWith(p)) out.push({ user: "room", display: "everyone in this room", room: true });
  return out.slice(0, MAX_SHOWN);
}

function close() {
  if (!state.open) return;
  state.open = false;
  state.items = [];
  const input = $("message-input");
  input.removeAttribute("aria-activedescendant");
  show($("mention-list"), false);
  $("mention-list").replaceChildren();
}

function draw() {
  const list = $("mention-list");
  const input = $("message-input");
  list.replaceChildren(...state.items.map((c, i) => {
    const option = h(
      "li",
      {
        id: `mention-option-${i}`,
        className: i === state.active ? "active" : "",
        dataset: { testid: "mention-option", user: c.user },
        attrs: { role: "option", "aria-selected": String(i === state.active) },
      },
      h("span", { className: "handle-at", textContent: `@${c.user}` }),
      c.display ? h("span", { className: "muted", textContent: ` ${c.display}` }) : "",
    );
    // mousedown, not click: the textarea keeps the focus and its caret.
    option.addEventListener("mousedown", (ev) => {
      ev.preventDefault();
      accept(i);
    });
    return option;
  }));
  show(list, true);
  input.setAttribute("aria-activedescendant", `mention-option-${state.active}`);
}

/** Replaces the partial `@name` before the caret with the chosen one and a space. */
function accept(i) {
  const c = state.items[i];
  if (!c) return;
  const input = $("message-input");
  const text = input.value;
  const inserted = `@${c.user} `;
  input.value = text.slice(0, state.start) + inserted + text.slice(state.end);
  const caret = state.start + inserted.length;
  input.setSelectionRange(caret, caret);
  close();
  input.dispatchEvent(new Event("input")); // autosize, typing
}

/** Re-reads the text before the caret: opens, updates or closes the list. */
export function updateCompletion() {
  const r = app.current;
  const input = $("message-input");
  if (!r || !r.member || input.selectionStart !== input.selectionEnd) {
    close();
    return;
  }
  const caret = input.selectionStart;
  const m = AT_CARET.exec(input.value.slice(0, caret));
  if (!m) {
    close();
    return;
  }
  const items = candidates(r, m[1]);
  if (!items.length) {
    close();
    return;
  }
  const before = state.open && state.items[state.active] ? state.items[state.active].user : null;
  state.items = items;
  state.active = Math.max(0, items.findIndex((c) => c.user === before));
  state.start = caret - m[1].length - 1;
  state.end = caret;
  state.open = true;
  draw();
}

/** Keys while the list is open: ↑/↓ choose, Enter/Tab take, Esc closes. True if handled. */
export function onCompletionKey(ev) {
  if (!state.open || ev.isComposing) return false;
  if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    ev.preventDefault();
    const n = state.items.length;
    state.active = (state.active + (ev.key === "ArrowDown" ? 1 : n - 1)) % n;
    draw();
    return true;
  }
  if ((ev.key === "Enter" && !ev.shiftKey) || ev.key === "Tab") {
    ev.preventDefault();
    accept(state.active);
    return true;
  }
  if (ev.key === "Escape") {
    ev.preventDefault();
    close();
    return true;
  }
  return false;
}

export function initCompletion() {
  const input = $("message-input");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", "mention-list");
  input.addEventListener("click", updateCompletion);
  input.addEventListener("blur", close);
}
