// chatmesh web client — account.js: the settings dialog: display name, password change,
// who may add the user to rooms (invitations), notification settings and push (this browser's opt-in; previews, DMs only and the shown
// room's mute, kept by the server for all the user's devices). It talks HTTP through the
// page's Api and hands results back through callbacks (a new profile; a new login after a
// password change); it owns no chat state.
"use strict";

import { ApiError } from "./api.js";
import { $ } from "./dom.js";
import * as notify from "./notify.js";
import * as push from "./push.js";

let hooks = null;
/** Whose settings and which room the dialog shows: {user, room: {id, title} | null}. */
const shown = { user: null, room: null };
/** Bumped per render of the push section: an older answer arriving late is dropped. */
let pushRender = 0;

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

function pushOptions(settings) {
  const options = $("push-options");
  options.hidden = !settings;
  if (!settings) return;
  $("push-preview").checked = settings.preview;
  $("push-dms-only").checked = settings.dms_only;
  const room = shown.room;
  $("push-mute-room-row").hidden = !room;
  if (room) {
    $("push-mute-room-label").textContent = `Mute ${room.title}`;
    $("push-mute-room").checked = settings.muted_rooms.includes(room.id);
  }
}

/** Draws the push section from the server's answers (the state, the account's settings). */
async function renderPush() {
  const mine = ++pushRender;
  const state = $("push-state");
  const button = $("push-toggle");
  button.disabled = true;
  let st;
  let settings = null;
  try {
    st = await push.status(hooks.api(), shown.user);
    if (st.state !== "unsupported" && st.state !== "unavailable") settings = await hooks.api().pushSettings();
  } catch (e) {
    st = { state: "error", reason: `Cannot ask the server about push: ${describe(e)}` };
  }
  if (mine !== pushRender) return;
  button.dataset.state = st.state;
  state.dataset.state = st.state;
  pushOptions(settings);
  if (st.state === "on") {
    state.textContent = "On in this browser.";
    button.textContent = "Turn push notifications off";
    button.disabled = false;
  } else if (st.state === "off") {
    state.textContent = "Off in this browser.";
    button.textContent = "Push notifications when this tab is closed";
    button.disabled = false;
  } else if (st.state === "denied") {
    state.textContent = "Blocked in the browser's site settings.";
    button.textContent = "Push notifications when this tab is closed";
  } else if (st.state === "unavailable") {
    state.textContent = "Unavailable: push notifications are turned off on this server.";
  } else {
    state.textContent = st.reason || "Not supported by this browser.";
  }
}

async function onPushClick() {
  const button = $("push-toggle");
  const turnOff = button.dataset.state === "on";
  button.disabled = true;
  try {
    if (turnOff) {
      await push.disable(hooks.api(), shown.user);
      status("Push notifications are off in this browser.");
    } else {
      await push.enable(hooks.api(), shown.user); // a click: the browser may ask
      status("Push notifications are on in this browser.");
    }
  } catch (e) {
    const what = turnOff ? "turn push notifications off" : "turn push notifications on";
    status(e instanceof push.PushError ? e.message : `Cannot ${what}: ${describe(e)}`, true);
  }
  await renderPush();
}

/** Sends one change of the push settings; the checkbox shows what the server kept. */
async function patchPush(patch) {
  try {
    pushOptions(await hooks.api().setPushSettings(patch));
    status("Push settings saved.");
  } catch (e) {
    status(`Cannot save the push settings: ${describe(e)}`, true);
    await renderPush();
  }
}

function onMuteRoom(ev) {
  const room = shown.room;
  if (!room) return;
  patchPush(ev.target.checked ? { mute_rooms: [room.id] } : { unmute_rooms: [room.id] });
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

/** Shows who may add the user to rooms, as the server has it (invitations extension). */
async function renderAdds() {
  const box = $("adds-invitations");
  box.disabled = true;
  try {
    box.checked = (await hooks.api().adds()) === "invitations";
    box.disabled = false;
  } catch (e) {
    // An older server, or an account of another issuer: nothing to choose.
    box.checked = false;
  }
}

async function onAddsChange(ev) {
  const box = ev.target;
  box.disabled = true;
  try {
    const adds = await hooks.api().setAdds(box.checked ? "invitations" : "anyone");
    box.checked = adds === "invitations";
    status(box.checked
      ? "Others now invite you to rooms; you accept or decline each invitation."
      : "Room owners and admins now add you to rooms directly.");
  } catch (e) {
    box.checked = !box.checked;
    status(`Cannot save who may add you to rooms: ${describe(e)}`, true);
  } finally {
    box.disabled = false;
  }
}

/** Opens the dialog with the current profile filled in; `room` ({id, title}) is the room shown. */
export function openSettings(user, profile, room) {
  const dialog = $("settings");
  shown.user = user;
  shown.room = room || null;
  $("display-name").value = (profile && profile.display_name) || "";
  $("pw-username").value = user || "";
  status("");
  renderNotify();
  renderPush();
  renderAdds();
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
  $("push-toggle").addEventListener("click", onPushClick);
  $("push-preview").addEventListener("change", (ev) => patchPush({ preview: ev.target.checked }));
  $("push-dms-only").addEventListener("change", (ev) => patchPush({ dms_only: ev.target.checked }));
  $("push-mute-room").addEventListener("change", onMuteRoom);
  $("adds-invitations").addEventListener("change", onAddsChange);
  dialog.addEventListener("close", () => {
    const opener = $("settings-open");
    if (!opener.hidden) opener.focus();
  });
}
