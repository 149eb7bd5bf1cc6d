/** Dropping and creating a benchmark database, through the server's `postgres` database. */
import pg from "pg"

/** Drops the database named in `url` (disconnecting its sessions) and creates it empty. */
export const recreateDatabase = async (url: string): Promise<void> => {
  const target = new URL(url)
  const name = decodeURIComponent(target.pathname.slice(1))
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`benchmark database name "${name}" is not a plain identifier`)
  const admin = new URL(url)
  admin.pathname = "/postgres"
  const client = new pg.Client({ connectionString: admin.toString() })
  await client.connect()
  try {
    await client.query(`drop database if exists ${name} with (force)`)
    await client.query(`create database ${name}`)
  } finally {
    await client.end()
  }
}

/** Drops the database named in `url` (disconnecting its sessions), if it exists. */
export const dropDatabase = async (url: string): Promise<void> => {
  const target = new URL(url)
  const name = decodeURIComponent(target.pathname.slice(1))
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`benchmark database name "${name}" is not a plain identifier`)
  const admin = new URL(url)
  admin.pathname = "/postgres"
  const client = new pg.Client({ connectionString: admin.toString() })
  await client.connect()
  try {
    await client.query(`drop database if exists ${name} with (force)`)
  } finally {
    await client.end()
  }
}
