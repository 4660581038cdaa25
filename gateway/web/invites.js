// chatmesh web client — invites.js: invitations (extension). A user who takes invitations
// (the settings' "Only by invitation") is not added to rooms by others: each add is an
// invitation, listed above the rooms with Accept and Decline until answered. The list is read
// at the start of a session and again on each `invitation` event; accepting adds the user
// (the `membership` event that follows refreshes the rooms). Owns only this list.
"use strict";

import { $ } from "./dom.js";

let hooks = null;
/** The invitations shown, by room. */
let shown = [];
/** Bumped per load: an older answer arriving late is dropped. */
let loads = 0;

function button(label, className, testid, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  b.dataset.testid = testid;
  b.addEventListener("click", onClick);
  return b;
}

function render() {
  const list = $("invitation-list");
  list.replaceChildren();
  $("invitations").hidden = shown.length === 0;
  for (const inv of shown) {
    const li = document.createElement("li");
    li.dataset.testid = "invitation";
    li.dataset.room = inv.room;
    const text = document.createElement("span");
    text.className = "invite-text";
    const role = inv.role === "admin" ? " as admin" : "";
    text.textContent = `${inv.room} — from ${inv.by}${role}`;
    li.append(
      text,
      button("Accept", "small", "invitation-accept", () => answer(inv.room, true)),
      button("Decline", "small secondary", "invitation-decline", () => answer(inv.room, false)),
    );
    list.append(li);
  }
}

/** Reads the invitations again (the first page: at most 200 are held). */
export async function loadInvitations() {
  const mine = ++loads;
  let page;
  try {
    page = await hooks.api().invitations({ limit: 200 });
  } catch (e) {
    // An older server without invitations: nothing to show.
    if (e && e.status === 404) page = { invitations: [] };
    else return hooks.notice(`cannot load invitations: ${hooks.describe(e)}`);
  }
  if (mine !== loads) return;
  shown = page.invitations;
  render();
}

async function answer(room, accept) {
  try {
    if (accept) await hooks.api().acceptInvitation(room);
    else await hooks.api().declineInvitation(room);
    if (accept) hooks.onAccepted(room);
  } catch (e) {
    hooks.notice(`cannot ${accept ? "accept" : "decline"} the invitation to ${room}: ${hooks.describe(e)}`);
  }
  await loadInvitations();
}

/** Clears the list (the session ended). */
export function resetInvitations() {
  loads++;
  shown = [];
  render();
}

/**
 * Wires the list once: `api()` gives the page's Api, `notice(text)` shows an error,
 * `describe(e)` words one, `onAccepted(room)` follows an accepted invitation.
 */
export function initInvitations(h) {
  hooks = h;
}
