// chatmesh web client — format.js: how times, days, names, avatars and file sizes look.
// Pure functions of their input (and the browser's locale and clock); no DOM.
"use strict";

/** "14:05", or "Dec 1 14:05" when not today. */
export function formatTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

/** The local calendar day of `ts` ("2026-12-03"), the key date separators group by. */
export function dayKey(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** A date separator's text: "Today", "Yesterday", else the weekday and date. */
export function dayLabel(ts) {
  const key = dayKey(ts);
  const now = Date.now();
  if (key === dayKey(now)) return "Today";
  if (key === dayKey(now - 86_400_000)) return "Yesterday";
  const d = new Date(ts);
  const sameYear = d.getFullYear() === new Date(now).getFullYear();
  return d.toLocaleDateString([], {
    weekday: "long",
    month: "long",
    day: "numeric",
    year: sameYear ? undefined : "numeric",
  });
}

/** Up to two initials of a display name (or user name), upper-cased; "?" for none. */
export function initials(name) {
  // Words that start with a letter or digit: "Bob ✨ Builder" is "BB".
  const words = String(name || "").trim().split(/[\s_\-.]+/u).filter((w) => /^[\p{L}\p{N}]/u.test(w));
  const first = (w) => Array.from(w)[0] || "";
  let out = words.length > 1 ? first(words[0]) + first(words[1]) : Array.from(words[0] || "").slice(0, 2).join("");
  out = out.toLocaleUpperCase();
  return out || "?";
}

/**
 * The avatar colour of a user: a hue from a hash of the user name (stable everywhere), at a
 * lightness where white text keeps a contrast of at least 4.5:1.
 */
export function avatarColor(user) {
  let hash = 0x811c9dc5;
  for (const ch of String(user)) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `hsl(${hash % 360} 50% 30%)`;
}

/** A file size for people: "512 B", "14.2 KiB", "3.5 MiB" (binary units, as the limits are). */
export function humanSize(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return "";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}
