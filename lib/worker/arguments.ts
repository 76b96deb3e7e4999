/**
 * How Python keyword arguments reach a TypeScript task function.
 *
 * The rule: a keyword whose name matches a parameter name fills that parameter (as Python
 * binds it); every other keyword is gathered into one object (Python's `**kwargs`), passed as
 * the function's last declared parameter when nothing else filled it, or else appended after
 * the last argument. Parameter names come from the task's `params` option, or are read from
 * the function's source (plain identifiers, with or without defaults).
 *
 * @module
 */

/**
 * Reads the parameter names of a function from its source. Destructured parameters give
 * `null` in their place; a rest parameter ends the list.
 *
 * @param fn The function.
 * @returns The names, in order.
 * @example
 * ```ts
 * import { parameterNames } from "./arguments.ts";
 * console.assert(parameterNames((x: number, y = 2) => x + y).join() === "x,y");
 * ```
 */
export function parameterNames(fn: (...args: never[]) => unknown): (string | null)[] {
  const source = Function.prototype.toString.call(fn);
  let text: string;
  const arrow = /^\s*(?:async\s+)?([A-Za-z_$][\w$]*)\s*=>/.exec(source);
  if (arrow) {
    text = arrow[1]!;
  } else {
    const open = source.indexOf("(");
    if (open < 0) return [];
    let depth = 0;
    let end = open;
    for (let i = open; i < source.length; i++) {
      const c = source[i];
      if (c === "(" || c === "[" || c === "{") depth++;
      else if (c === ")" || c === "]" || c === "}") depth--;
      if (depth === 0) {
        end = i;
        break;
      }
    }
    text = source.slice(open + 1, end);
  }
  const names: (string | null)[] = [];
  let depth = 0;
  let current = "";
  const flush = () => {
    const part = current.trim();
    current = "";
    if (part === "") return;
    if (part.startsWith("...")) return "rest";
    if (part.startsWith("{") || part.startsWith("[")) names.push(null);
    else names.push(/^[A-Za-z_$][\w$]*/.exec(part)?.[0] ?? null);
  };
  for (const c of text) {
    if (c === "(" || c === "[" || c === "{") depth++;
    else if (c === ")" || c === "]" || c === "}") depth--;
    if (c === "," && depth === 0) {
      if (flush() === "rest") return names;
    } else current += c;
  }
  flush();
  return names;
}

/**
 * Binds positional and keyword arguments to a parameter list.
 *
 * @param args Positional arguments.
 * @param kwargs Keyword arguments.
 * @param params Parameter names.
 * @returns The argument list to call the function with.
 * @throws {TypeError} When a keyword names a parameter that was also given positionally.
 * @example
 * ```ts
 * import { bindArguments } from "./arguments.ts";
 * const args = bindArguments([2], { y: 3, extra: true }, ["x", "y"]);
 * console.assert(JSON.stringify(args) === '[2,3,{"extra":true}]');
 * ```
 */
export function bindArguments(
  args: readonly unknown[],
  kwargs: Record<string, unknown>,
  params: readonly (string | null)[],
): unknown[] {
  const out = [...args];
  const rest: Record<string, unknown> = {};
  let hasRest = false;
  for (const [key, value] of Object.entries(kwargs)) {
    const i = params.indexOf(key);
    if (i < 0) {
      rest[key] = value;
      hasRest = true;
      continue;
    }
    if (i < args.length) {
      throw new TypeError(`Task got multiple values for argument '${key}'`);
    }
    while (out.length < i) out.push(undefined);
    out[i] = value;
  }
  if (hasRest) {
    const last = params.length - 1;
    if (last >= out.length || (last >= args.length && out[last] === undefined && last >= 0)) {
      while (out.length < last) out.push(undefined);
      out[last] = rest;
    } else out.push(rest);
  }
  return out;
}
