/**
 * Reads a schema folder (see `schema/README.md`): its versioned and repeatable SQL files,
 * and `revision`, the file that orders releases of the folder. `revision` holds a number,
 * raised by one for every release whose repeatable files differ, and the digest of the
 * repeatable files it was written for. The versioned files need no revision (their numbers
 * order them); the repeatable ones do, or an older release could not tell it is older and
 * would apply its older definitions over newer ones (see `Migrations.ts`).
 *
 * Plain promises: `scripts/schema-revision.ts` calls these without an Effect runtime, and
 * `Migrations.readSchema` wraps them.
 */
import { createHash } from "node:crypto"
import { readdir, readFile, writeFile } from "node:fs/promises"
import { fileURLToPath, pathToFileURL } from "node:url"

/** The schema folder taskfiber ships. */
export const schemaDirectory = new URL("../../schema/", import.meta.url)
/** The folders of repeatable files, in the order they are applied. */
export const repeatableFolders = ["functions", "views"] as const
/** The file, in the schema folder, holding its revision. */
export const revisionFile = "revision"
/** What to run after changing a repeatable file. */
export const reviseCommand = "npm run schema:revision"

/** One schema file, named by its path under the schema folder; `id`, `name`: a versioned file's `NNN_name`. */
export interface SchemaFile { readonly path: string; readonly text: string; readonly id: number; readonly name: string; readonly checksum: string }
/** A revision of a schema folder: its number, and the digest of its repeatable files. */
export interface Revision { readonly revision: number; readonly digest: string }
/**
 * A schema folder's files, each part in the order it is applied. `revision`: what its
 * revision file says (null: it has none); `digest`: the repeatable files' digest, computed.
 */
export interface SchemaFiles {
  readonly versioned: ReadonlyArray<SchemaFile>
  readonly repeatable: ReadonlyArray<SchemaFile>
  readonly revision: Revision | null
  readonly digest: string
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")

/** The digest of repeatable files: the sha256 of their `path:sha256` lines, sorted by path. */
const digestOf = (repeatable: ReadonlyArray<Pick<SchemaFile, "path" | "checksum">>): string =>
  sha256(repeatable.map((f) => `${f.path}:${f.checksum}\n`).sort().join(""))

const rootOf = (directory: URL | string) =>
  typeof directory === "string" ? pathToFileURL(directory.replace(/\/?$/, "/")) : directory

/** A schema folder's path, ending in `/`. */
export const folderPath = (directory: URL | string): string => fileURLToPath(rootOf(directory))

const header = `# The revision of this schema folder and the digest of its repeatable files, written by
# \`${reviseCommand}\` after they change (see README.md). Not edited by hand.
`

/** The text of a revision file. */
const formatRevision = (revision: Revision): string => `${header}revision ${revision.revision}\ndigest ${revision.digest}\n`

/** Parses a revision file: `revision N` and `digest HEX` lines; `#` lines are comments. */
export const parseRevision = (text: string): Revision => {
  const fields = new Map(text.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => [l.split(/\s+/)[0]!, l.split(/\s+/).slice(1).join(" ")]))
  const revision = Number(fields.get("revision"))
  const digest = fields.get("digest") ?? ""
  if (fields.size !== 2 || !Number.isSafeInteger(revision) || revision < 1 || !/^[0-9a-f]{64}$/.test(digest)) {
    throw new Error(`${revisionFile} is not a \`revision N\` line (N ≥ 1) and a \`digest <sha256 hex>\` line ` +
      `(after a merge conflict: keep the higher revision and run \`${reviseCommand}\` again)`)
  }
  return { revision, digest }
}

/** Reads the files of a schema folder (default: the one taskfiber ships). */
export const readSchemaFiles = async (directory: URL | string = schemaDirectory): Promise<SchemaFiles> => {
  const root = rootOf(directory)
  const missing = (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? null : Promise.reject(e))
  const read = async (folder: string): Promise<Array<SchemaFile>> => {
    const names = (await readdir(new URL(`${folder}/`, root)).catch(missing)) ?? []
    return Promise.all(names.filter((n) => n.endsWith(".sql")).sort().map(async (n) => {
      const text = await readFile(new URL(`${folder}/${n}`, root), "utf8")
      const m = /^(\d+)_(.+)\.sql$/.exec(n)
      return { path: `${folder}/${n}`, text, id: Number(m?.[1] ?? NaN), name: m?.[2] ?? n, checksum: sha256(text) }
    }))
  }
  const repeatable = (await Promise.all(repeatableFolders.map(read))).flat()
  const revisionText = await readFile(new URL(revisionFile, root), "utf8").catch(missing)
  return {
    versioned: (await read("migrations")).filter((f) => !Number.isNaN(f.id)).sort((a, b) => a.id - b.id),
    repeatable,
    revision: revisionText === null ? null : parseRevision(revisionText),
    digest: digestOf(repeatable)
  }
}

/**
 * Why a schema folder's revision file does not order its files (null: it does). Files
 * whose revision file is missing or was written for other repeatable files are refused:
 * their revision could undo a newer release's definitions. In a release that means files
 * were changed by hand; in a checkout, that the revision was not raised after a change.
 */
export const revisionMismatch = (files: SchemaFiles, directory: URL | string = schemaDirectory): string | null => {
  if (files.revision?.digest === files.digest) return null
  const file = `${folderPath(directory)}${revisionFile}`
  return (files.revision === null ? `${file} is missing` : `${file} (revision ${files.revision.revision}) was written for other ` +
    `functions/ and views/ files than these (digest ${files.revision.digest.slice(0, 12)}…, theirs ${files.digest.slice(0, 12)}…)`) +
    `: after changing one, run \`${reviseCommand}\`, which raises the revision by one and writes their digest, ` +
    `and commit that file with them`
}

/**
 * Raises the revision of a schema folder by one and writes its repeatable files' digest,
 * unless the digest written is theirs already. Returns the revision written (null: none was).
 */
export const bumpRevision = async (directory: URL | string = schemaDirectory): Promise<Revision | null> => {
  const files = await readSchemaFiles(directory)
  if (files.revision?.digest === files.digest) return null
  const revision = { revision: (files.revision?.revision ?? 0) + 1, digest: files.digest }
  await writeFile(new URL(revisionFile, rootOf(directory)), formatRevision(revision))
  return revision
}
