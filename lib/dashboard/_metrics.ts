/**
 * Prometheus text for the dashboard's `/metrics`, with Flower's metric names so existing
 * Grafana boards keep working: `flower_events_total{type,task,worker}`,
 * `flower_task_runtime_seconds{task}` (a histogram), `flower_worker_online{worker}` and
 * `flower_worker_number_of_currently_executing_tasks{worker}`.
 *
 * @module
 */

import { type DashboardState, RUNTIME_BUCKETS } from "./state.ts";

function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/**
 * Renders the state's counters as Prometheus text (format 0.0.4).
 *
 * @param state The dashboard state.
 * @returns The text.
 */
export function metricsText(state: DashboardState): string {
  const lines: string[] = [];
  lines.push("# HELP flower_events_total Number of events");
  lines.push("# TYPE flower_events_total counter");
  for (const [key, n] of state.eventCounts) {
    const [type, task, worker] = key.split("\0") as [string, string, string];
    lines.push(
      `flower_events_total{task="${label(task)}",type="${label(type)}",worker="${
        label(worker)
      }"} ${n}`,
    );
  }
  lines.push("# HELP flower_task_runtime_seconds Task runtime");
  lines.push("# TYPE flower_task_runtime_seconds histogram");
  for (const [task, counts] of state.runtimes) {
    let cumulative = 0;
    RUNTIME_BUCKETS.forEach((le, i) => {
      cumulative += counts[i] ?? 0;
      lines.push(
        `flower_task_runtime_seconds_bucket{le="${le}",task="${label(task)}"} ${cumulative}`,
      );
    });
    cumulative += counts[RUNTIME_BUCKETS.length] ?? 0;
    lines.push(`flower_task_runtime_seconds_bucket{le="+Inf",task="${label(task)}"} ${cumulative}`);
    lines.push(`flower_task_runtime_seconds_count{task="${label(task)}"} ${cumulative}`);
    lines.push(
      `flower_task_runtime_seconds_sum{task="${label(task)}"} ${state.runtimeSums.get(task) ?? 0}`,
    );
  }
  lines.push("# HELP flower_worker_online Worker online status");
  lines.push("# TYPE flower_worker_online gauge");
  for (const w of state.workers.values()) {
    lines.push(`flower_worker_online{worker="${label(w.hostname)}"} ${w.online ? 1 : 0}`);
  }
  lines.push(
    "# HELP flower_worker_number_of_currently_executing_tasks Number of tasks currently executing at a worker",
  );
  lines.push("# TYPE flower_worker_number_of_currently_executing_tasks gauge");
  for (const w of state.workers.values()) {
    lines.push(
      `flower_worker_number_of_currently_executing_tasks{worker="${
        label(w.hostname)
      }"} ${w.active}`,
    );
  }
  return lines.join("\n") + "\n";
}
