/**
 * The lock beside the embedded server's data folder: one holder at a time, across
 * processes; a dead holder's lock is taken over; a live one's wait is bounded.
 */
import { spawn } from "node:child_process"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, beforeEach, expect, it } from "vitest"
import * as FolderLock from "../../src/store/FolderLock.ts"

const module = fileURLToPath(new URL("../../src/store/FolderLock.ts", import.meta.url))
let dir = ""
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "taskfiber-lock-"))
})
afterEach(() => rm(dir, { recursive: true, force: true }))

it("a second acquire waits for the first's release, woken by the file's removal", async () => {
  const path = join(dir, "data.lock")
  const events: Array<string> = []
  const release = await FolderLock.acquire(path)
  expect((await readFile(path, "utf8")).trim()).toBe(String(process.pid))
  const second = FolderLock.acquire(path).then((releaseSecond) => {
    events.push("second acquired")
    return releaseSecond
  })
  // Let the second reach its wait: it cannot have the lock while the first holds it.
  await new Promise((resolve) => setImmediate(resolve))
  events.push("first released")
  await release()
  await (await second)()
  expect(events).toEqual(["first released", "second acquired"])
})

it("the lock of a holder that no longer lives is taken over at once", async () => {
  const path = join(dir, "data.lock")
  await writeFile(path, "999999999\n")
  const started = Date.now()
  const release = await FolderLock.acquire(path, 5_000)
  expect(Date.now() - started).toBeLessThan(1_000)
  expect((await readFile(path, "utf8")).trim()).toBe(String(process.pid))
  await release()
})

it("a holder killed with SIGKILL while holding it does not block the next for longer than a second's check", async () => {
  const path = join(dir, "data.lock")
  const child = spawn(process.execPath, [
    "--input-type=module",
    "-e",
    `const m = await import(${JSON.stringify(module)}); await m.acquire(${JSON.stringify(path)}); console.log("held"); setInterval(() => {}, 1000)`
  ], { stdio: ["ignore", "pipe", "inherit"] })
  await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()))
  const waiting = FolderLock.acquire(path, 10_000)
  child.kill("SIGKILL")
  const release = await waiting
  expect((await readFile(path, "utf8")).trim()).toBe(String(process.pid))
  await release()
})

it("waiting for a live holder is bounded, and the error names the file and the holder", async () => {
  const path = join(dir, "data.lock")
  await writeFile(path, `${process.pid}\n`)
  await expect(FolderLock.acquire(path, 300)).rejects.toThrow(
    new RegExp(`waited 0\\.\\d s for the lock ${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}, held by pid ${process.pid}; .*remove`)
  )
})
