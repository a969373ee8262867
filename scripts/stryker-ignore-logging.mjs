// A StrykerJS ignore-plugin (stryker.config.mjs: `ignorers: ["vmq-logging"]`): mutants inside a
// log call are not tested. A log line's text and fields are for the operator; no test asserts
// them, and mutating them changes no settlement, event or effect. Only the call's own
// arguments are skipped: the code around it (the branch that logs, the catch that swallows)
// is still mutated. The count of mutants skipped this way is in docs/testing.md.

const LEVELS = new Set(["trace", "debug", "info", "warn", "error", "fatal", "child"]);

/** `log`, `this.log`, `this.#log`, `deps.log`, `this.deps.log`: a logger by the project's naming. */
function isLogger(node) {
  if (node.type === "Identifier") return node.name === "log";
  if (node.type === "MemberExpression" && !node.computed) {
    const p = node.property;
    if (p.type === "PrivateName") return p.id.name === "log";
    return p.type === "Identifier" && p.name === "log";
  }
  return false;
}

/** `x.log.warn(...)`, `log.child(...)`, or `withBindings(logger, {...})`. */
function isLogCall(node) {
  if (node.type !== "CallExpression") return false;
  const callee = node.callee;
  if (callee.type === "Identifier") return callee.name === "withBindings";
  return (
    callee.type === "MemberExpression" &&
    !callee.computed &&
    callee.property.type === "Identifier" &&
    LEVELS.has(callee.property.name) &&
    isLogger(callee.object)
  );
}

export const strykerPlugins = [
  {
    kind: "Ignore",
    name: "vmq-logging",
    value: {
      shouldIgnore(path) {
        return isLogCall(path.node) ? "a log call: text and fields for the operator" : undefined;
      },
    },
  },
];
