// chatmesh web client — dom.js: the few DOM helpers every module uses. User content only
// ever enters the page as text nodes, textContent or attribute values built here, never as
// HTML.
"use strict";

export const $ = (id) => document.getElementById(id);

/** createElement with properties (className, textContent, hidden, …), data-*, attributes and children. */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null) continue;
      if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "attrs") for (const [a, av] of Object.entries(v)) node.setAttribute(a, av);
      else node[k] = v;
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}
