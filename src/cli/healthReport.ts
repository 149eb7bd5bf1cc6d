/**
 * How `taskfiber health` shows a report: a table an operator reads, each finding
 * that is not healthy followed by what to change, or one JSON object (`--json`).
 */
import { formatMs, units } from "../domain/HealthPolicy.ts"
import type { Report } from "../observability/Health.ts"

/** What the command says of the checks it cannot measure. */
export const notHere = "not measured by this command: its own pool says nothing about a running service's, and the Kafka consumer lives in the service"

/** The report as one JSON-ready object. */
export const toJson = (report: Report) => ({
  status: report.status,
  sampled_at: report.sampledAt === null ? null : report.sampledAt.toISOString(),
  findings: report.findings.map((f) => ({
    check: f.check,
    status: f.status,
    value: f.value,
    unit: units[f.check],
    message: f.message,
    ...(f.recommendation === undefined ? {} : { recommendation: f.recommendation })
  })),
  unmeasured: report.unmeasured
})

const valueText = (value: number, unit: "%" | "ms" | ""): string =>
  unit === "ms" ? formatMs(value) : unit === "%" ? `${Math.round(value * 10) / 10} %` : value.toLocaleString("en-US")

/** The report as a table, worst findings first, recommendations under theirs. */
export const toText = (report: Report): string => {
  const rank = { CRITICAL: 0, UNHEALTHY: 1, DEGRADED: 2, HEALTHY: 3 } as const
  const findings = [...report.findings].sort((a, b) => rank[a.status] - rank[b.status])
  const rows = findings.map((f) => [f.status, f.check, f.check === "database" ? "-" : valueText(f.value, units[f.check]), f.message] as const)
  const widths = [0, 1, 2].map((i) => Math.max(["STATUS", "CHECK", "VALUE"][i]!.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c)).join("  ").trimEnd()
  const out = [
    `health: ${report.status}${report.sampledAt === null ? "" : ` (sampled ${report.sampledAt.toISOString()})`}`,
    line(["STATUS", "CHECK", "VALUE", "FINDING"])
  ]
  findings.forEach((f, i) => {
    out.push(line(rows[i]!))
    if (f.recommendation !== undefined) out.push(`${" ".repeat(widths[0]! + 2)}→ ${f.recommendation}`)
  })
  // One line per distinct reason.
  const reasons = new Map<string, Array<string>>()
  for (const u of report.unmeasured) reasons.set(u.reason, [...(reasons.get(u.reason) ?? []), u.check])
  for (const [reason, checks] of reasons) out.push(`not measured: ${checks.join(", ")} (${reason})`)
  return out.join("\n")
}
