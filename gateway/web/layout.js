// chatmesh web client — layout.js: the responsive layout and keyboard paths. On narrow
// screens (≤ 760 px) the room list and the people panel are drawers over the conversation,
// opened from the top bar / room header and closed by Escape, the backdrop or picking a room;
// a closed drawer is invisible to focus and screen readers. The room list is also walked
// with the arrow keys (Home/End too); Tab still reaches every control.
"use strict";

import { $ } from "./dom.js";

const NARROW = window.matchMedia("(max-width: 760px)");

export function isNarrow() {
  return NARROW.matches;
}

function view() {
  return $("chat-view");
}

function setOpen(which) {
  const v = view();
  v.classList.toggle("rooms-open", which === "rooms");
  v.classList.toggle("people-open", which === "people");
  $("menu-toggle").setAttribute("aria-expanded", String(which === "rooms"));
  $("people-toggle").setAttribute("aria-expanded", String(which === "people"));
  $("drawer-backdrop").hidden = !which;
}

/** Which drawer is open: "rooms", "people" or null. */
export function openDrawer() {
  const v = view();
  if (v.classList.contains("rooms-open")) return "rooms";
  if (v.classList.contains("people-open")) return "people";
  return null;
}

/** Opens a drawer (narrow screens) and moves focus into it. */
export function showDrawer(which) {
  if (!isNarrow()) return;
  setOpen(which);
  const panel = $(which === "rooms" ? "sidebar" : "people");
  const first = panel.querySelector(which === "rooms" ? "li.active .room-btn, .room-btn, input, button" : "button, input, [tabindex]");
  // After the transition starts: a still-hidden element cannot take focus.
  requestAnimationFrame(() => (first || panel).focus({ preventScroll: true }));
}

/** Closes any drawer; `returnFocus` puts focus back on the control that opened it. */
export function closeDrawers(returnFocus) {
  const was = openDrawer();
  setOpen(null);
  if (returnFocus && was) $(was === "rooms" ? "menu-toggle" : "people-toggle").focus();
}

function onRoomListKey(ev) {
  if (!["ArrowDown", "ArrowUp", "Home", "End"].includes(ev.key)) return;
  const target = ev.target;
  if (!(target instanceof HTMLElement) || !target.classList.contains("room-btn")) return;
  const all = Array.from($("sidebar").querySelectorAll(".room-btn"));
  const i = all.indexOf(target);
  if (i < 0) return;
  ev.preventDefault();
  let next = i;
  if (ev.key === "ArrowDown") next = Math.min(all.length - 1, i + 1);
  else if (ev.key === "ArrowUp") next = Math.max(0, i - 1);
  else if (ev.key === "Home") next = 0;
  else next = all.length - 1;
  all[next].focus();
}

export function initLayout() {
  $("menu-toggle").addEventListener("click", () => (openDrawer() === "rooms" ? closeDrawers(true) : showDrawer("rooms")));
  $("no-room-open").addEventListener("click", () => showDrawer("rooms"));
  $("people-toggle").addEventListener("click", () => (openDrawer() === "people" ? closeDrawers(true) : showDrawer("people")));
  $("drawer-backdrop").addEventListener("click", () => closeDrawers(true));
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && openDrawer() && !document.querySelector("dialog[open]")) {
      ev.preventDefault();
      closeDrawers(true);
    }
  });
  $("sidebar").addEventListener("keydown", onRoomListKey);
  // The skip link: to the composer when a room is open, else to the room list.
  document.querySelector(".skip-link").addEventListener("click", (ev) => {
    ev.preventDefault();
    const input = $("message-input");
    if (!$("room-pane").hidden && !input.disabled) input.focus();
    else if (isNarrow()) showDrawer("rooms");
    else {
      const first = $("sidebar").querySelector(".room-btn, input");
      if (first) first.focus();
    }
  });
  NARROW.addEventListener("change", () => setOpen(null));
}
