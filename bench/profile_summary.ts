// deno-lint-ignore-file no-console -- a command-line tool
/**
 * Summarizes a V8 `.cpuprofile` (from `deno run --cpu-prof`): self time by function and by
 * file, and total (inclusive) time of the top functions.
 *
 * ```sh
 * deno run -A bench/profile_summary.ts /tmp/prof/CPU.*.cpuprofile [--top 30] [--filter lib/]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** A row of the summary. */
export interface Row {
  /** Function (or file) label. */
  label: string;
  /** Milliseconds. */
  ms: number;
  /** Share of all samples, percent. */
  pct: number;
}

function shortUrl(url: string): string {
  if (!url) return "(native)";
  const i = url.indexOf("/lib/");
  if (i >= 0) return url.slice(i + 1);
  const npm = url.indexOf("/node_modules/");
  if (npm >= 0) return "npm:" + url.slice(npm + 14).replace(/^\.deno\//, "");
  return url.replace(/^file:\/\//, "").replace(/^ext:/, "ext:");
}

function label(f: CallFrame): string {
  return `${f.functionName || "(anonymous)"} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
}

/**
 * Self time by function, self time by file, and inclusive time by function.
 *
 * @param profile The parsed profile.
 * @returns The three tables, largest first.
 */
export function summarize(
  profile: Profile,
): { self: Row[]; files: Row[]; total: Row[]; ms: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; charge it to the previous sample.
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const all = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  const self = new Map<string, number>();
  const files = new Map<string, number>();
  const total = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    add(self, label(node.callFrame), us);
    add(files, shortUrl(node.callFrame.url), us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!.callFrame);
      if (!seen.has(l)) {
        seen.add(l);
        add(total, l, us);
      }
    }
  }
  const rows = (m: Map<string, number>) =>
    [...m].map(([label, us]) => ({ label, ms: us / 1000, pct: (100 * us) / all }))
      .sort((a, b) => b.ms - a.ms);
  return { self: rows(self), files: rows(files), total: rows(total), ms: all / 1000 };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { top: { type: "string", default: "25" }, filter: { type: "string" } },
  });
  const top = Number(values.top);
  for (const path of positionals) {
    const s = summarize(JSON.parse(Deno.readTextFileSync(path)));
    const show = (title: string, rows: Row[]) => {
      console.log(`\n## ${title}`);
      for (
        const r of rows.filter((r) => !values.filter || r.label.includes(values.filter)).slice(
          0,
          top,
        )
      ) {
        console.log(
          `${r.pct.toFixed(1).padStart(5)} % ${r.ms.toFixed(0).padStart(7)} ms  ${r.label}`,
        );
      }
    };
    console.log(`# ${path}: ${s.ms.toFixed(0)} ms sampled`);
    show("self time by function", s.self);
    show("self time by file", s.files);
    show("total (inclusive) time by function", s.total);
  }
}
