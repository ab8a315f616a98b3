// kcnn-serve's page: the DOM helper shared by page.js and window-view.js (loaded first).
"use strict";

window.kcnn = window.kcnn || {};

// el("div", {class: "x", text: "label"}, [children]): one element with attributes and children.
window.kcnn.el = function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
};
