/**
 * Prometheus text exposition (format 0.0.4), shared by the worker's `--metrics-port` endpoint
 * and the dashboard's `/metrics`: metric families in, text out, label values escaped.
 *
 * @module
 */

/** Label names to values. */
export type Labels = Readonly<Record<string, string>>;

/** One sample of a counter or gauge. */
export interface Sample {
  /** Its labels. */
  labels: Labels;
  /** Its value. */
  value: number;
}

/** One series of a histogram: counts per bucket (not cumulative), the open bucket last. */
export interface HistogramSeries {
  /** Its labels. */
  labels: Labels;
  /** Counts per bucket of the family's `buckets`, then the count above the last bound. */
  counts: readonly number[];
  /** The sum of the observed values. */
  sum: number;
}

/** A metric family: a name, help text, a type and its samples. */
export type MetricFamily =
  | { name: string; help: string; type: "counter" | "gauge"; samples: readonly Sample[] }
  | {
    name: string;
    help: string;
    type: "histogram";
    buckets: readonly number[];
    series: readonly HistogramSeries[];
  };

/**
 * Escapes a label value: backslash, double quote and newline.
 *
 * @param value The value.
 * @returns The escaped text (without quotes).
 * @example
 * ```ts
 * import { escapeLabel } from "./prometheus.ts";
 * console.assert(escapeLabel('a"b\n') === 'a\\"b\\n');
 * ```
 */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const parts = Object.keys(labels).sort().map((k) => `${k}="${escapeLabel(labels[k]!)}"`);
  if (extra) parts.unshift(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function numberText(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

/**
 * Renders metric families as Prometheus text.
 *
 * @param families The families, in the order to write them.
 * @returns The text, ending in a newline.
 * @example
 * ```ts
 * import { renderPrometheus } from "./prometheus.ts";
 * const text = renderPrometheus([
 *   { name: "jobs_total", help: "Jobs", type: "counter", samples: [{ labels: { task: "t" }, value: 2 }] },
 * ]);
 * console.assert(text.includes('jobs_total{task="t"} 2'));
 * ```
 */
export function renderPrometheus(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
    lines.push(`# TYPE ${f.name} ${f.type}`);
    if (f.type !== "histogram") {
      for (const s of f.samples) {
        lines.push(`${f.name}${labelText(s.labels)} ${numberText(s.value)}`);
      }
      continue;
    }
    for (const s of f.series) {
      let cumulative = 0;
      f.buckets.forEach((le, i) => {
        cumulative += s.counts[i] ?? 0;
        lines.push(`${f.name}_bucket${labelText(s.labels, ["le", String(le)])} ${cumulative}`);
      });
      cumulative += s.counts[f.buckets.length] ?? 0;
      lines.push(`${f.name}_bucket${labelText(s.labels, ["le", "+Inf"])} ${cumulative}`);
      lines.push(`${f.name}_count${labelText(s.labels)} ${cumulative}`);
      lines.push(`${f.name}_sum${labelText(s.labels)} ${numberText(s.sum)}`);
    }
  }
  return lines.join("\n") + "\n";
}

/**
 * Parses Prometheus text into samples (for tests and tools): `name{labels} value` lines;
 * comments and blank lines are skipped.
 *
 * @param text The text.
 * @returns The samples, each with its full name (`_bucket`, `_count` included).
 * @example
 * ```ts
 * import { parsePrometheus } from "./prometheus.ts";
 * const [s] = parsePrometheus('a_total{x="1",y="q\\"r"} 3\n');
 * console.assert(s!.name === "a_total" && s!.labels.y === 'q"r' && s!.value === 3);
 * ```
 */
export function parsePrometheus(
  text: string,
): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new SyntaxError(`Cannot parse a Prometheus line: ${line}`);
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/g;
    for (const l of (m[2] ?? "").matchAll(re)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c);
    }
    const v = m[3]!;
    out.push({
      name: m[1]!,
      labels,
      value: v === "+Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v),
    });
  }
  return out;
}
