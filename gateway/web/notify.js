// chatmesh web client — notify.js: desktop notifications and a short sound for messages
// that concern the user (a DM, or a mention of @user or the display name) while the tab is
// hidden. Permission is asked only from a click (`enable()`); the settings (notifications
// on, sound on) are kept per browser in localStorage. The sound is synthesised with Web Audio,
// so there is no file to load.
"use strict";

const SETTINGS_KEY = "chatmesh.notify";
/** At most one sound per this many ms, however many messages arrive. */
const SOUND_GAP_MS = 1500;
/** Longest notification body, in characters. */
const MAX_BODY = 140;

const settings = { notify: true, sound: true };
let audio = null;
let lastSound = 0;

try {
  Object.assign(settings, JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}"));
} catch (_) {
  // Unreadable settings: the defaults stand.
}

function save() {
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  } catch (_) {
    // Storage disabled: the setting holds for this page only.
  }
}

/** "unsupported" | "default" | "granted" | "denied". */
export function permission() {
  return typeof Notification === "function" ? Notification.permission : "unsupported";
}

export function getSettings() {
  return { ...settings, permission: permission() };
}

export function setSound(on) {
  settings.sound = !!on;
  save();
}

export function setNotify(on) {
  settings.notify = !!on;
  save();
}

/** Asks for permission; call it from a user's click only. Resolves to the permission. */
export async function enable() {
  if (permission() === "unsupported") return "unsupported";
  settings.notify = true;
  save();
  if (Notification.permission === "default") {
    try {
      await Notification.requestPermission();
    } catch (_) {
      // Old browsers take a callback instead; the permission stays "default".
    }
  }
  // Prepared during the click, so that a later beep is allowed to play.
  ensureAudio();
  return permission();
}

function ensureAudio() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!audio && Ctx) {
    try {
      audio = new Ctx();
    } catch (_) {
      audio = null;
    }
  }
  return audio;
}

function beep() {
  const now = Date.now();
  if (now - lastSound < SOUND_GAP_MS) return;
  lastSound = now;
  const ctx = ensureAudio();
  if (!ctx) return;
  try {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.25);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.26);
  } catch (_) {
    // A browser that refuses to play without a gesture: no sound, nothing else lost.
  }
}

/** Does `body` mention the user: @user, or @"display name" / @display name as a word? */
export function mentions(body, user, displayName) {
  const text = String(body).toLowerCase();
  const names = [user, displayName].filter(Boolean).map((n) => `@${String(n).toLowerCase()}`);
  return names.some((n) => {
    let at = text.indexOf(n);
    while (at >= 0) {
      const after = text[at + n.length];
      if (after === undefined || !/[\p{L}\p{N}_-]/u.test(after)) return true;
      at = text.indexOf(n, at + 1);
    }
    return false;
  });
}

/**
 * A message arrived: notify when the page is hidden (or unfocused) and it concerns the user.
 * `info` = {title, body, tag, concerns}; `onClick` brings its room up.
 */
export function onIncoming(info, onClick) {
  if (!info.concerns) return false;
  const away = document.visibilityState !== "visible" || !document.hasFocus();
  if (!away) return false;
  let shown = false;
  if (settings.notify && permission() === "granted") {
    try {
      const body = Array.from(String(info.body)).slice(0, MAX_BODY).join("");
      const n = new Notification(info.title, { body, tag: info.tag });
      n.onclick = () => {
        window.focus();
        onClick();
        n.close();
      };
      shown = true;
    } catch (_) {
      // Some platforms allow notifications only from a service worker; the sound remains.
    }
  }
  if (settings.sound) beep();
  return shown;
}
