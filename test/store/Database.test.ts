/**
 * The database settings as the README documents them: read from the environment
 * (a ConfigProvider here), with their defaults.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Option, Redacted } from "effect"
import * as Database from "../../src/store/Database.ts"

const read = (env: Record<string, string>) => Database.config.parse(ConfigProvider.fromEnv({ env }))

describe("database settings", () => {
  it.effect("defaults: embedded PostgreSQL in .data/postgres on port 54329, a pool of 10 keeping 4", () =>
    Effect.gen(function*() {
      const cfg = yield* read({})
      expect(Option.isNone(cfg.url)).toBe(true)
      expect(cfg).toMatchObject({ poolMax: 10, embeddedDir: ".data/postgres", embeddedPort: 54329 })
      expect(Database.poolSizes(cfg)).toEqual({ poolMax: 10, poolMin: 4 })
    }))

  it.effect("each variable is read; DB_POOL_MIN is at most DB_POOL_MAX; an empty DATABASE_URL counts as unset", () =>
    Effect.gen(function*() {
      const cfg = yield* read({
        DATABASE_URL: "postgres://u:pw@db:5432/app",
        DB_POOL_MAX: "2",
        EMBEDDED_PG_DIR: "/var/lib/tf",
        EMBEDDED_PG_PORT: "6000"
      })
      expect(Option.map(cfg.url, Redacted.value)).toEqual(Option.some("postgres://u:pw@db:5432/app"))
      expect(cfg).toMatchObject({ poolMax: 2, embeddedDir: "/var/lib/tf", embeddedPort: 6000 })
      expect(Database.poolSizes(cfg)).toEqual({ poolMax: 2, poolMin: 2 })
      expect(Database.poolSizes(yield* read({ DB_POOL_MIN: "0" }))).toEqual({ poolMax: 10, poolMin: 0 })
      expect(Option.isNone((yield* read({ DATABASE_URL: " " })).url)).toBe(true)
    }))
})

describe("the pool's application_name", () => {
  it("is taskfiber, the host and the pid, unique to each pool of the process, within PostgreSQL's 63 bytes", () => {
    const first = Database.nextApplicationName("worker-1", 4242)
    const second = Database.nextApplicationName("worker-1", 4242)
    expect(first).toMatch(/^taskfiber worker-1 4242(\/\d+)?$/)
    expect(second).not.toBe(first)
    const long = Database.nextApplicationName("h".repeat(200) + ".example.com", 4194304)
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(63)
    expect(long).toMatch(/^taskfiber h+ 4194304\/\d+$/)
    expect(Database.nextApplicationName("hôte", 1)).toMatch(/^taskfiber h\?te 1\/\d+$/)
  })
})
