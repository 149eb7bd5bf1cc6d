/**
 * The web dashboard: a static page (src/http/dashboard) that polls the JSON
 * routes and `/metrics` of the same server, and uPlot for its charts, served
 * from node_modules so nothing comes from a CDN.
 *
 *   GET /                       index.html
 *   GET /dashboard/app.js       the page's script
 *   GET /dashboard/style.css    its styles
 *   GET /dashboard/uplot.js     uPlot's `dist/uPlot.iife.min.js`
 *   GET /dashboard/uplot.css    uPlot's `dist/uPlot.min.css`
 *
 * The page reads what the admin API reads (its rules apply to the page's calls),
 * so serving it needs no token.
 */
import { readFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"

// Beside this module: src/http/dashboard from the sources, dist/http/dashboard
// once built (the build copies it).
const own = (name: string) => fileURLToPath(new URL(`./dashboard/${name}`, import.meta.url))
// Through Node's resolution, so an installed taskfiber finds its own uplot.
const uplot = (name: string) => createRequire(import.meta.url).resolve(`uplot/dist/${name}`)

/** An asset: its file, read once, and its content type. */
const asset = (path: () => string, contentType: string) => {
  let bytes: Promise<Uint8Array> | undefined
  return Effect.tryPromise(() => bytes ??= readFile(path()).catch((e) => {
    bytes = undefined
    throw e
  })).pipe(
    Effect.map((body) => HttpServerResponse.uint8Array(body, { contentType, headers: { "cache-control": "no-cache" } })),
    Effect.catch(() => Effect.succeed(HttpServerResponse.text("dashboard asset missing", { status: 404 })))
  )
}

/** The dashboard's routes. */
export const routes = Layer.mergeAll(
  HttpRouter.add("GET", "/", asset(() => own("index.html"), "text/html; charset=utf-8")),
  HttpRouter.add("GET", "/dashboard/app.js", asset(() => own("app.js"), "text/javascript; charset=utf-8")),
  HttpRouter.add("GET", "/dashboard/style.css", asset(() => own("style.css"), "text/css; charset=utf-8")),
  HttpRouter.add("GET", "/dashboard/uplot.js", asset(() => uplot("uPlot.iife.min.js"), "text/javascript; charset=utf-8")),
  HttpRouter.add("GET", "/dashboard/uplot.css", asset(() => uplot("uPlot.min.css"), "text/css; charset=utf-8"))
)
