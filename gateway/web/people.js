// chatmesh web client — people.js: how people are shown: avatars (initials on a colour
// derived from the user name), names (the display name with the user name beside it: display
// names are not unique), and the member list of a room with roles and presence.
"use strict";

import { h } from "./dom.js";
import { avatarColor, initials } from "./format.js";

const ROLE_ORDER = { owner: 0, admin: 1, member: 2 };

/** The avatar of `user`: decorative (the name is always written next to it). */
export function avatar(user, displayName) {
  const node = h("span", {
    className: "avatar",
    textContent: initials(displayName || user),
    attrs: { "aria-hidden": "true" },
    dataset: { testid: "avatar" },
  });
  // Through the CSSOM: the CSP allows no style attributes.
  node.style.backgroundColor = avatarColor(user);
  return node;
}

/** The name nodes of a user: display name (if any), then the user name. */
export function nameNodes(user, displayName) {
  if (!displayName) return [h("span", { className: "from", textContent: user })];
  return [
    h("span", { className: "from", textContent: displayName }),
    h("span", { className: "handle", textContent: `@${user}` }),
  ];
}

/**
 * Renders the member list of room `r` ({members, membersError, online}) into `list`, with
 * a note in `note`. Members sort by role, then online first, then name.
 */
export function renderMemberList(list, note, r, me) {
  if (!r || !r.member) {
    list.replaceChildren();
    note.textContent = r ? "Join the room to see its members." : "";
    return;
  }
  if (r.membersError) {
    list.replaceChildren();
    note.textContent = r.membersError;
    return;
  }
  if (!r.members) {
    list.replaceChildren();
    note.textContent = "…";
    return;
  }
  const online = r.online || new Set();
  const sorted = r.members.slice().sort((a, b) =>
    (ROLE_ORDER[a.role] ?? 3) - (ROLE_ORDER[b.role] ?? 3)
    || Number(online.has(b.user)) - Number(online.has(a.user))
    || a.user.localeCompare(b.user));
  list.replaceChildren(...sorted.map((m) => {
    const on = online.has(m.user);
    return h(
      "li",
      { dataset: { testid: "member-item", user: m.user, role: m.role, online: String(on) } },
      avatar(m.user, m.display_name),
      h("span", { className: "member-name" }, ...nameNodes(m.user, m.display_name),
        m.user === me ? h("span", { className: "muted", textContent: " (you)" }) : null),
      m.role !== "member" ? h("span", { className: `role ${m.role}`, textContent: m.role }) : null,
      m.muted ? h("span", {
        className: "role muted-badge",
        textContent: "muted",
        title: typeof m.muted_until === "number" ? `muted until ${new Date(m.muted_until * 1000).toLocaleString()}` : "muted until unmuted",
        dataset: { testid: "member-muted" },
      }) : null,
      h("span", {
        className: on ? "dot" : "dot off",
        title: on ? "online" : "offline",
        attrs: { role: "img", "aria-label": on ? "online" : "offline" },
      }),
    );
  }));
  note.textContent = r.membersMore ? "More members are not shown." : "";
}
