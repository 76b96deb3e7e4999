/**
 * The page and its static files, imported as text so they ship inside the module graph
 * (no build step, no CDN, no file reads at run time): the HTML, one script, one style sheet,
 * and uPlot (from npm) for the charts.
 *
 * @module
 */

import html from "./static/index.html" with { type: "text" };
import script from "./static/app.js" with { type: "text" };
import style from "./static/app.css" with { type: "text" };
import uplot from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotStyle from "uplot/dist/uPlot.min.css" with { type: "text" };

/** The page; `__CSRF_TOKEN__` is replaced per process. */
export const INDEX_HTML: string = html;

/** Static files by path. */
export const STATIC_FILES: Record<string, { type: string; body: string }> = {
  "/static/app.js": { type: "text/javascript; charset=utf-8", body: script },
  "/static/app.css": { type: "text/css; charset=utf-8", body: style },
  "/static/uplot.js": { type: "text/javascript; charset=utf-8", body: uplot },
  "/static/uplot.css": { type: "text/css; charset=utf-8", body: uplotStyle },
};
