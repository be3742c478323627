// A tiny element builder: text goes in as text nodes, never as HTML.

/** ``h("p", {class: "x", onclick: f}, "text", child)``: attributes starting with "on" are
 * listeners; ``null``/``false`` children and attributes are skipped. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** An error box for a FriendlyError (or anything else thrown), with an optional retry. */
export function errorBox(err, t, retry = null) {
  const friendly = typeof err?.text === "function";
  const ref = friendly ? err.reference() : "";
  return h("div", { class: "alert", role: "alert" },
    h("p", {}, friendly ? err.text() : t("err.generic")),
    ref ? h("p", { class: "ref" }, `${t("err.code")}: ${ref}`) : null,
    retry ? h("button", { type: "button", class: "secondary", onclick: retry }, t("err.retry"))
      : null);
}
