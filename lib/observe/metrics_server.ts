/**
 * The worker's Prometheus endpoint (`worker --metrics-port N`): `GET /metrics` answers with
 * {@linkcode WorkerMetrics.prometheus}. Bound to 127.0.0.1 unless told otherwise.
 *
 * @module
 */

import type { WorkerMetrics } from "./metrics.ts";

/** Options of {@linkcode serveMetrics}. */
export interface ServeMetricsOptions {
  /** The port; `0` picks a free one. */
  port: number;
  /**
   * The address to listen on.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** Its address, `http://127.0.0.1:9808/metrics`. */
  readonly url: string;
  /** Stops it; idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `/metrics` (and `/` as the same) in Prometheus text.
 *
 * @param metrics The worker's metrics.
 * @param options Port and address.
 * @returns The server.
 * @example
 * ```ts
 * import { App, Consumer } from "@celeriac/celeriac";
 * import { WorkerMetrics } from "./metrics.ts";
 * import { serveMetrics } from "./metrics_server.ts";
 * const app = new App({ broker: "memory://ms-doc", backend: "memory://ms-doc" });
 * const m = new WorkerMetrics(new Consumer(app, { pool: "inline" }));
 * const server = serveMetrics(m, { port: 0 });
 * const text = await (await fetch(server.url)).text();
 * console.assert(text.includes("flower_worker_online"));
 * await server.close();
 * m.close();
 * await app.close();
 * ```
 */
export function serveMetrics(metrics: WorkerMetrics, options: ServeMetricsOptions): MetricsServer {
  const hostname = options.hostname ?? "127.0.0.1";
  const server = Deno.serve({ port: options.port, hostname, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405 });
    }
    if (path !== "/metrics" && path !== "/") return new Response("not found\n", { status: 404 });
    return new Response(await metrics.prometheus(), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  });
  const addr = server.addr as Deno.NetAddr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${addr.port}/metrics`,
    close: () => closing ??= server.shutdown(),
  };
}
