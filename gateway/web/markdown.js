// chatmesh web client — markdown.js: a safe subset of markdown for message bodies, built as
// DOM nodes. Nothing of a body is ever parsed as HTML: markup stays text.
//
// The subset: ```fenced code blocks``` (the first line's language word is dropped), `inline
// code`, **bold** (or __bold__), *italic* (or _italic_ at word boundaries), [text](https://…)
// links and bare http(s) URLs. Links open in a new tab without the opener or a referrer;
// only http: and https: become links (javascript:, data:, … stay text). A link whose text
// reads as a URL or a domain of another host than it opens shows its real target instead:
// "[https://bank.example](https://evil.example)" reads "https://bank.example (https://evil.example)"
// with only the second a link. Emphasis nests
// (**bold *and italic***); code is never formatted inside. A marker without its closing
// twin stays as typed.
"use strict";

import { h } from "./dom.js";

/** Bodies longer than this are shown as plain text (formatting costs time per character). */
const MAX_FORMATTED = 16 * 1024;
/** Deepest nesting of emphasis that is still formatted. */
const MAX_DEPTH = 4;

const URL_CHARS = "[^\\s<>\"'`]";
const BARE_URL = new RegExp(`\\bhttps?:\\/\\/${URL_CHARS}+`, "y");
const LINK = new RegExp(`\\[([^\\[\\]\\n]{1,500})\\]\\((https?:\\/\\/${URL_CHARS}+?)\\)`, "y");

function link(url, text) {
  return h("a", { href: url, textContent: text, target: "_blank", rel: "noopener noreferrer" });
}

/** Is `url` an http(s) URL a browser parses as such (so the href is what is shown)? */
function safeUrl(url) {
  try {
    const u = new URL(url);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch (_) {
    return false;
  }
}

/**
 * Whether a link's text passes for another address than its target: the text reads as an
 * address (no spaces; a dot, slash, colon or @ in it; emphasis markers ignored) and names a
 * domain other than the target's, in any script ("bаnk.example" is punycode to the URL
 * parser), or carries a user part ("https://bank.example@evil.example"). Text that names no
 * domain ("v1.2", "owner/repo", "10:30") is words, not an address.
 */
function spoofs(text, href) {
  const t = text.replace(/[*`~]/g, "").trim();
  if (t === "" || /\s/.test(t) || !/[./:@]/.test(t)) return false;
  let named;
  try {
    named = new URL(/^https?:/i.test(t) ? t : `https://${t}`);
  } catch (_) {
    return false;
  }
  if (named.username !== "" || named.password !== "") return true;
  if (!/\.(xn--|\p{L})[^.]*\.?$/u.test(named.hostname)) return false;
  return named.hostname !== new URL(href).hostname;
}

/**
 * Inline formatting of `text` (no code fences inside) as nodes. `depth` bounds nesting;
 * at the limit the rest is text.
 */
function inline(text, depth) {
  const out = [];
  let plain = "";
  const flush = () => {
    if (plain) out.push(plain);
    plain = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "`") {
      const end = text.indexOf("`", i + 1);
      if (end > i + 1) {
        flush();
        out.push(h("code", { textContent: text.slice(i + 1, end) }));
        i = end + 1;
        continue;
      }
    } else if (c === "[") {
      LINK.lastIndex = i;
      const m = LINK.exec(text);
      if (m && safeUrl(m[2])) {
        flush();
        if (spoofs(m[1], m[2])) {
          out.push(`${m[1]} (`, link(m[2], m[2]), ")");
        } else {
          out.push(link(m[2], m[1]));
        }
        i = LINK.lastIndex;
        continue;
      }
    } else if ((c === "h" || c === "H") && (i === 0 || !/[\w]/.test(text[i - 1]))) {
      BARE_URL.lastIndex = i;
      const m = BARE_URL.exec(text);
      if (m) {
        // Trailing punctuation belongs to the sentence, not the URL.
        const url = m[0].replace(/[.,;:!?)\]]+$/, "");
        if (safeUrl(url)) {
          flush();
          out.push(link(url, url));
          i += url.length;
          continue;
        }
      }
    } else if ((c === "*" || c === "_") && depth < MAX_DEPTH) {
      const span = emphasis(text, i);
      if (span) {
        flush();
        const tag = span.strong ? "strong" : "em";
        out.push(h(tag, null, ...inline(text.slice(span.from, span.to), depth + 1)));
        i = span.end;
        continue;
      }
    }
    plain += c;
    i += 1;
  }
  flush();
  return out;
}

/**
 * The emphasis opening at `i`, if it closes: {strong, from, to, end} (content from..to, the
 * closing marker ends at `end`). Openers are followed, and closers preceded, by a non-space;
 * `_` only counts at word boundaries (snake_case stays as it is).
 */
function emphasis(text, i) {
  const c = text[i];
  const strong = text[i + 1] === c;
  const marker = strong ? c + c : c;
  const from = i + marker.length;
  if (from >= text.length || /\s/.test(text[from])) return null;
  if (c === "_" && i > 0 && /\w/.test(text[i - 1])) return null;
  let at = from;
  for (;;) {
    const close = text.indexOf(marker, at + 1);
    if (close < 0) return null;
    // For single markers, skip a double one (it belongs to a nested strong span).
    const doubled = !strong && text[close + 1] === c;
    const okBefore = !/\s/.test(text[close - 1]);
    const okAfter = c !== "_" || close + marker.length >= text.length || !/\w/.test(text[close + marker.length]);
    if (!doubled && okBefore && okAfter && close > from) {
      // "**bold *italic***": the strong span closes with the last two of the three.
      const shift = strong && text[close + 2] === c ? 1 : 0;
      return { strong, from, to: close + shift, end: close + shift + marker.length };
    }
    at = doubled ? close + 1 : close;
  }
}

/**
 * A message body as DOM nodes (text, links, emphasis, code). The text content of the result
 * is the body without its markers.
 */
export function renderBody(body) {
  const text = String(body);
  if (text.length > MAX_FORMATTED) return [text];
  const out = [];
  const fence = /```([^\n`]*)(\n?)([\s\S]*?)```/g;
  let at = 0;
  for (const m of text.matchAll(fence)) {
    if (m.index > at) out.push(...inline(text.slice(at, m.index), 0));
    // "```js\ncode```": a single word on the fence line is a language tag, not code;
    // "```code```" on one line is all code.
    const lang = m[1].trim();
    let code = `${m[1]}${m[2]}${m[3]}`;
    if (m[2] && (!lang || /^[\w+-]{1,20}$/.test(lang))) code = m[3];
    out.push(h("pre", null, h("code", { textContent: code.replace(/\n$/, "") })));
    at = m.index + m[0].length;
  }
  if (at < text.length) out.push(...inline(text.slice(at), 0));
  return out;
}
