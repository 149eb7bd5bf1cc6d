/**
 * This package's version, from its package.json: one folder up from both src/ (a
 * clone) and dist/ (the installed package).
 */
import { readFileSync } from "node:fs"

/** The `version` of package.json; undefined when it cannot be read. */
export const packageVersion: string | undefined = (() => {
  try {
    const manifest = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: unknown }
    return typeof manifest.version === "string" ? manifest.version : undefined
  } catch {
    return undefined
  }
})()

/** The version to show: {@link packageVersion}, or 0.0.0 when it cannot be read. */
export const shownVersion: string = packageVersion ?? "0.0.0"
