/**
 * Prometheus text for the dashboard's `/metrics`, with Flower's metric names so existing
 * Grafana boards keep working: `flower_events_total{type,task,worker}`,
 * `flower_task_runtime_seconds{task}` (a histogram), `flower_worker_online{worker}` and
 * `flower_worker_number_of_currently_executing_tasks{worker}`. The text is written by the
 * shared renderer in `lib/observe/prometheus.ts` (the worker's `--metrics-port` uses it too).
 *
 * @module
 */

import { renderPrometheus } from "../observe/prometheus.ts";
import { type DashboardState, RUNTIME_BUCKETS } from "./state.ts";

/**
 * Renders the state's counters as Prometheus text (format 0.0.4).
 *
 * @param state The dashboard state.
 * @returns The text.
 */
export function metricsText(state: DashboardState): string {
  const workers = [...state.workers.values()];
  return renderPrometheus([
    {
      name: "flower_events_total",
      help: "Number of events",
      type: "counter",
      samples: [...state.eventCounts].map(([key, value]) => {
        const [type, task, worker] = key.split("\0") as [string, string, string];
        return { labels: { task, type, worker }, value };
      }),
    },
    {
      name: "flower_task_runtime_seconds",
      help: "Task runtime",
      type: "histogram",
      buckets: RUNTIME_BUCKETS,
      series: [...state.runtimes].map(([task, counts]) => ({
        labels: { task },
        counts,
        sum: state.runtimeSums.get(task) ?? 0,
      })),
    },
    {
      name: "flower_worker_online",
      help: "Worker online status",
      type: "gauge",
      samples: workers.map((w) => ({ labels: { worker: w.hostname }, value: w.online ? 1 : 0 })),
    },
    {
      name: "flower_worker_number_of_currently_executing_tasks",
      help: "Number of tasks currently executing at a worker",
      type: "gauge",
      samples: workers.map((w) => ({ labels: { worker: w.hostname }, value: w.active })),
    },
  ]);
}
