/**
 * The README's examples run: every code block marked `<!-- readme-example: prints
 * "…" -->` is taken from README.md itself, written to a file inside the repository
 * (so `import … from "taskfiber"` resolves to this package), run by node on its own
 * test database, and must exit 0 having printed the text the marker names.
 */
import { execFile } from "node:child_process"
import { mkdir, readFile, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { Effect, Exit, Scope } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as TestDatabase from "./support/TestDatabase.ts"

const run = promisify(execFile)
const root = fileURLToPath(new URL("..", import.meta.url))
const folder = join(root, ".readme-examples")

interface Example {
  readonly line: number
  readonly extension: "mjs" | "ts"
  readonly prints: string
  readonly code: string
}

/** The marked blocks of `markdown`: the marker line, then a ```js or ```ts fence. */
export const examples = (markdown: string): ReadonlyArray<Example> => {
  const lines = markdown.split("\n")
  const found: Array<Example> = []
  lines.forEach((text, i) => {
    const marker = /^<!-- readme-example: prints "(.*)" -->$/.exec(text)
    if (marker === null) return
    const fence = /^```(js|ts)$/.exec(lines[i + 1] ?? "")
    if (fence === null) throw new Error(`README.md:${i + 1}: a readme-example marker must precede a \`\`\`js or \`\`\`ts block`)
    const end = lines.findIndex((l, j) => j > i + 1 && l === "```")
    found.push({
      line: i + 1,
      extension: fence[1] === "js" ? "mjs" : "ts",
      prints: marker[1]!,
      code: lines.slice(i + 2, end).join("\n") + "\n"
    })
  })
  return found
}

const readme = await readFile(join(root, "README.md"), "utf8")
const blocks = examples(readme)
const scope = Scope.makeUnsafe()

afterAll(async () => {
  await rm(folder, { recursive: true, force: true })
  await Effect.runPromise(Scope.close(scope, Exit.void))
}, 60_000)

describe("README.md", () => {
  it("has runnable examples", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(2)
  })

  for (const block of blocks) {
    it(`the example at line ${block.line} runs and prints ${block.prints}`, async () => {
      const name = await Effect.runPromise(Scope.provide(scope)(TestDatabase.scopedDatabase))
      await mkdir(folder, { recursive: true })
      const file = join(folder, `line-${block.line}.${block.extension}`)
      await writeFile(file, block.code)
      const { stdout } = await run(process.execPath, ["--conditions=taskfiber-source", file], {
        cwd: root,
        env: { ...process.env, DATABASE_URL: TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name) }
      })
      expect(stdout).toContain(block.prints)
    }, 60_000)
  }
})
