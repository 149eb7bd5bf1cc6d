/**
 * A lock shared by the processes of one machine: a file created exclusively
 * ("wx") holding its owner's pid. The embedded server's start and stop run under
 * it, so two commands typed at the same moment never both initialise or start a
 * server on one data folder: the second waits and then finds the first's server.
 *
 * A lock whose owner died (kill -9, a crash) is taken over: its pid no longer
 * names a live process. Waiting is woken by the file's removal (fs.watch on its
 * folder), with a check every second for an owner that died without removing it.
 */
import { watch } from "node:fs"
import { readFile, rm, writeFile } from "node:fs/promises"
import { basename, dirname } from "node:path"

/** Whether `pid` names a live process (of any user: EPERM means it exists). */
export const isAlive = (pid: number): boolean => {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The lock could not be taken within the time allowed. */
export class FolderLockTimeout extends Error {
  constructor(path: string, owner: number | undefined, waitedMs: number) {
    super(
      `waited ${(waitedMs / 1000).toFixed(1)} s for the lock ${path}` +
        (owner === undefined ? "" : `, held by pid ${owner}`) +
        `; if no taskfiber process is starting or stopping the embedded server, remove ${path}`
    )
  }
}

const ownerOf = async (path: string): Promise<number | undefined> => {
  try {
    const pid = Number.parseInt((await readFile(path, "utf8")).trim(), 10)
    return Number.isNaN(pid) ? undefined : pid
  } catch {
    return undefined
  }
}

/** Creates the file holding this process's pid; false when it exists. */
const tryCreate = async (path: string): Promise<boolean> => {
  try {
    await writeFile(path, `${process.pid}\n`, { flag: "wx" })
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false
    throw error
  }
}

/**
 * Removes the lock of a dead owner. Two waiters may find it dead at once; had both
 * removed it, the second could remove the lock the first had meanwhile taken. So
 * the removal runs under a second lock file, and checks the owner again there. A
 * takeover file left by a process that died in those few milliseconds is removed
 * the same way (without a third file: that window is too short to matter).
 */
const takeOver = async (path: string, deadOwner: number): Promise<"removed" | "busy"> => {
  const takeover = `${path}.takeover`
  if (!(await tryCreate(takeover))) {
    const other = await ownerOf(takeover)
    if (other !== undefined && !isAlive(other)) {
      await rm(takeover, { force: true })
      return "removed"
    }
    return "busy"
  }
  try {
    if ((await ownerOf(path)) === deadOwner) await rm(path, { force: true })
    return "removed"
  } finally {
    await rm(takeover, { force: true })
  }
}

/** The next change in the lock's folder, or a tick after `ms`; cancel frees the watcher. */
const nextChange = (path: string, ms: number): { readonly changed: Promise<void>; readonly cancel: () => void } => {
  let cancel = () => {}
  const changed = new Promise<void>((resolve) => {
    let watcher: ReturnType<typeof watch> | undefined
    const done = () => {
      clearTimeout(timer)
      watcher?.close()
      resolve()
    }
    cancel = done
    const timer = setTimeout(done, ms)
    try {
      watcher = watch(dirname(path), (_event, name) => {
        if (name === null || name.startsWith(basename(path))) done()
      })
      watcher.on("error", done)
    } catch {
      // A folder that cannot be watched: the timer alone wakes the waiter.
    }
  })
  return { changed, cancel }
}

/**
 * Takes the lock at `path` (its folder must exist), waiting at most `timeoutMs`;
 * resolves with its release. Not reentrant: a second `acquire` in the same process
 * waits for the first's release, as another process would.
 */
export const acquire = async (path: string, timeoutMs = 60_000): Promise<() => Promise<void>> => {
  const started = Date.now()
  for (;;) {
    // Watched before trying, so a removal between the try and the wait is not missed.
    const wait = nextChange(path, Math.max(1, Math.min(1000, timeoutMs - (Date.now() - started))))
    if (await tryCreate(path)) {
      wait.cancel()
      return () => rm(path, { force: true })
    }
    const owner = await ownerOf(path)
    // No pid yet (the owner is between create and write) counts as alive.
    if (owner !== undefined && !isAlive(owner)) {
      if ((await takeOver(path, owner)) === "removed") {
        wait.cancel()
        continue
      }
    }
    const waited = Date.now() - started
    if (waited >= timeoutMs) {
      wait.cancel()
      throw new FolderLockTimeout(path, owner, waited)
    }
    await wait.changed
  }
}
