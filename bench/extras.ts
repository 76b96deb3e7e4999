// deno-lint-ignore-file no-console -- a command-line tool
/**
 * The celeriac-only columns of a harness run, as Markdown: CPU ms per task of the worker, the
 * producer and the broker's server (redis-server, or RabbitMQ on amqp rows), the worker's RSS, the load average, and the backlog slices. The
 * peer harness's `summarize.py` keeps only the shared columns.
 *
 * ```sh
 * deno run -A bench/extras.ts /path/to/peers/.run/runs-<stamp>.jsonl
 * ```
 *
 * @module
 */

interface Row {
  system: string;
  scenario: string;
  variant: string;
  broker?: string;
  rep?: number;
  tasks_per_sec?: number;
  p50_ms?: number;
  worker_cpu_ms_per_task?: number | null;
  producer_cpu_ms_per_task?: number | null;
  redis_cpu_ms_per_task?: number | null;
  rabbitmq_cpu_ms_per_task?: number | null;
  peak_in_flight_per_web_worker?: number;
  rss_idle_mib?: number | null;
  rss_peak_mib?: number | null;
  load?: number;
  slice_per_sec?: number[];
  error?: string;
}

/**
 * Median of numbers (the mean of the middle two for an even count); null when empty.
 *
 * @param values The numbers; nulls and undefined are skipped.
 * @returns The median.
 */
export function median(values: readonly (number | null | undefined)[]): number | null {
  const v = values.filter((x): x is number => typeof x === "number").sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

const fmt = (x: number | null, digits = 3) => x === null ? "–" : x.toFixed(digits);

if (import.meta.main) {
  const rows: Row[] = Deno.readTextFileSync(Deno.args[0]!).split("\n").filter(Boolean)
    .map((l) => JSON.parse(l)).filter((r: Row) => r.system === "celeriac" && !r.error);
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const key = `${r.scenario}\t${r.variant}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  console.log(
    "| scenario | variant | reps | worker CPU ms/task | producer CPU ms/task | redis CPU ms/task | RabbitMQ CPU ms/task | worker RSS idle / peak MiB | most in flight per Web Worker | load |",
  );
  console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const [key, rs] of groups) {
    const [scenario, variant] = key.split("\t");
    const m = (k: keyof Row) => median(rs.map((r) => r[k] as number | null | undefined));
    const rss = m("rss_peak_mib") === null
      ? "–"
      : `${fmt(m("rss_idle_mib"), 0)} / ${fmt(m("rss_peak_mib"), 0)}`;
    console.log(
      `| ${scenario} | ${variant} | ${rs.length} | ${fmt(m("worker_cpu_ms_per_task"))} | ${
        fmt(m("producer_cpu_ms_per_task"))
      } | ${fmt(m("redis_cpu_ms_per_task"))} | ${fmt(m("rabbitmq_cpu_ms_per_task"))} | ${rss} | ${
        fmt(m("peak_in_flight_per_web_worker"), 0)
      } | ${fmt(m("load"), 1)} |`,
    );
  }
  for (const r of rows.filter((r) => r.slice_per_sec)) {
    console.log(
      `\nbacklog rep ${r.rep}: ${r.tasks_per_sec} tasks/s overall; per 10k slice (deepest first): ${
        r.slice_per_sec!.map((x) => Math.round(x)).join(", ")
      }`,
    );
  }
}
