/**
 * Raises schema/revision by one and writes the digest of schema/functions/ and
 * schema/views/ into it; run after changing one of them (`npm run schema:revision`),
 * and commit the file with them. Does nothing when the digest written is theirs
 * already, so running it twice raises the revision once. See schema/README.md.
 *
 *   scripts/node.sh node scripts/schema-revision.ts [schema folder]
 */
import { bumpRevision, folderPath, readSchemaFiles, revisionFile, schemaDirectory } from "../src/store/SchemaFiles.ts"

const directory = process.argv[2] ?? schemaDirectory
try {
  const written = await bumpRevision(directory)
  const file = `${folderPath(directory)}${revisionFile}`
  if (written) {
    console.log(`${file}: revision ${written.revision}, digest ${written.digest}`)
  } else {
    console.log(`${file}: up to date (revision ${(await readSchemaFiles(directory)).revision?.revision})`)
  }
} catch (error) {
  console.error(`schema-revision: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
}
