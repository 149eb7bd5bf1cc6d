/** Dropping and creating a benchmark database, through the server's `postgres` database. */
import pg from "pg"

/** Runs `statements` on the server of `url` (through its `postgres` database), with the database's name. */
const onServer = async (url: string, statements: (name: string) => ReadonlyArray<string>): Promise<void> => {
  const target = new URL(url)
  const name = decodeURIComponent(target.pathname.slice(1))
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`benchmark database name "${name}" is not a plain identifier`)
  const admin = new URL(url)
  admin.pathname = "/postgres"
  const client = new pg.Client({ connectionString: admin.toString() })
  await client.connect()
  try {
    for (const statement of statements(name)) await client.query(statement)
  } finally {
    await client.end()
  }
}

/** Drops the database named in `url` (disconnecting its sessions) and creates it empty. */
export const recreateDatabase = (url: string): Promise<void> =>
  onServer(url, (name) => [`drop database if exists ${name} with (force)`, `create database ${name}`])

/** Drops the database named in `url` (disconnecting its sessions), if it exists. */
export const dropDatabase = (url: string): Promise<void> =>
  onServer(url, (name) => [`drop database if exists ${name} with (force)`])
