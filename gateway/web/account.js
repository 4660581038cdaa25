// chatmesh web client — account.js: the settings dialog: display name, password change and
// notification settings. It talks HTTP through the page's Api and hands results back through
// callbacks (a new profile; a new login after a password change); it owns no chat state.
"use strict";

import { ApiError } from "/api.js";
import { $ } from "/dom.js";
import * as notify from "/notify.js";

let hooks = null;

function status(text, isError) {
  const node = $("settings-status");
  node.textContent = text;
  node.classList.toggle("error", !!isError);
}

function describe(e) {
  if (e instanceof ApiError) {
    if (e.status === 0) return "cannot reach the server";
    if (e.status === 429) return "too many attempts; wait a little and try again";
    return e.message || e.code;
  }
  return (e && e.message) || String(e);
}

function renderNotify() {
  const s = notify.getSettings();
  const state = $("notify-state");
  const button = $("notify-enable");
  $("notify-sound").checked = s.sound;
  if (s.permission === "unsupported") {
    state.textContent = "Not supported by this browser.";
    button.disabled = true;
  } else if (s.permission === "granted") {
    state.textContent = s.notify ? "On" : "Off";
    button.textContent = s.notify ? "Turn desktop notifications off" : "Turn desktop notifications on";
    button.disabled = false;
  } else if (s.permission === "denied") {
    state.textContent = "Blocked in the browser's site settings.";
    button.disabled = true;
  } else {
    state.textContent = "";
    button.textContent = "Enable desktop notifications";
    button.disabled = false;
  }
}

async function onNotifyClick() {
  const s = notify.getSettings();
  if (s.permission === "granted") notify.setNotify(!s.notify);
  else await notify.enable(); // a click: the browser may ask
  renderNotify();
}

async function onProfileSubmit(ev) {
  ev.preventDefault();
  const value = $("display-name").value.trim();
  if (Array.from(value).length > 64) return status("Display names have at most 64 characters.", true);
  try {
    const profile = await hooks.api().setDisplayName(value || null);
    hooks.onProfile(profile);
    status(profile.display_name ? `Your display name is now “${profile.display_name}”.` : "Display name cleared.");
  } catch (e) {
    status(`Cannot save the display name: ${describe(e)}`, true);
  }
}

async function onPasswordSubmit(ev) {
  ev.preventDefault();
  const oldPassword = $("old-password").value;
  const newPassword = $("new-password").value;
  if (!oldPassword) return status("Enter your current password.", true);
  if (newPassword.length < 8) return status("The new password needs at least 8 characters.", true);
  $("password-submit").disabled = true;
  // The server revokes every token of ours, the socket's too (4001), before we read the
  // answer: that close must not end the session.
  hooks.renewing(true);
  try {
    const login = await hooks.api().changePassword(oldPassword, newPassword);
    $("old-password").value = "";
    $("new-password").value = "";
    status("Password changed. Your other sessions were logged out.");
    hooks.onNewLogin(login);
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) status("The current password is wrong.", true);
    else status(`Cannot change the password: ${describe(e)}`, true);
  } finally {
    hooks.renewing(false);
    $("password-submit").disabled = false;
  }
}

/** Opens the dialog with the current profile filled in. */
export function openSettings(user, profile) {
  const dialog = $("settings");
  $("display-name").value = (profile && profile.display_name) || "";
  $("pw-username").value = user || "";
  status("");
  renderNotify();
  if (!dialog.open) dialog.showModal();
  $("display-name").focus();
}

/**
 * Wires the dialog once. `api()` gives the page's Api; `onProfile(profile)` and
 * `onNewLogin({token, expires_at})` report results; `renewing(true|false)` brackets a
 * password change (its revocation of our own tokens is expected).
 */
export function initSettings(h) {
  hooks = h;
  const dialog = $("settings");
  $("settings-close").addEventListener("click", () => dialog.close());
  $("profile-form").addEventListener("submit", onProfileSubmit);
  $("password-form").addEventListener("submit", onPasswordSubmit);
  $("notify-enable").addEventListener("click", onNotifyClick);
  $("notify-sound").addEventListener("change", (ev) => notify.setSound(ev.target.checked));
  dialog.addEventListener("close", () => {
    const opener = $("settings-open");
    if (!opener.hidden) opener.focus();
  });
}
