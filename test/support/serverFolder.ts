/**
 * Temporary folders for the embedded server. As root the server runs as the
 * `postgres` user, who must enter its data folder and every folder on the way to
 * the project's binaries: a clone in a mktemp folder (0700) keeps it out, so such
 * folders on the way are opened to others (entering only).
 */
import { chmod, mkdtemp, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

/** Lets the server's user reach the project's binaries (as root; else nothing to do). */
export const openProjectToServerUser = async (): Promise<void> => {
  if (process.getuid?.() !== 0) return
  for (let d = root; d.startsWith(tmpdir() + "/") && d !== tmpdir(); d = dirname(d)) {
    const mode = (await stat(d)).mode
    if ((mode & 0o001) === 0) await chmod(d, (mode & 0o7777) | 0o001)
  }
}

/** A new temporary folder (`prefix…`) that the server's user can reach. */
export const serverFolder = async (prefix: string): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  await chmod(dir, 0o755)
  await openProjectToServerUser()
  return dir
}
