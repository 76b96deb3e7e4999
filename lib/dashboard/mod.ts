/**
 * The web dashboard: `deno run -A cli.ts dashboard --app ./tasks.ts`, or embedded with a
 * `Deno.serve` handler.
 *
 * ```ts ignore
 * import { App } from "@celeriac/celeriac";
 * import { Dashboard } from "@celeriac/celeriac/dashboard";
 * const app = new App({ broker: "redis://127.0.0.1:6379/0" });
 * const dashboard = new Dashboard(app, { token: "secret" });
 * await dashboard.start();
 * Deno.serve({ port: 5555 }, dashboard.fetch);
 * ```
 *
 * @module
 */

export {
  type ControlSupport,
  Dashboard,
  type DashboardOptions,
  type DashboardServer,
  isLoopback,
  serveDashboard,
  type ServeDashboardOptions,
} from "./server.ts";
export {
  DashboardState,
  type DashboardStateOptions,
  RUNTIME_BUCKETS,
  type StateChange,
  type TaskInfo,
  type WorkerInfo,
} from "./state.ts";
