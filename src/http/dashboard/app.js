// The taskfiber dashboard: polls the server's JSON routes and /metrics every
// 2 s and draws them; no framework, no build step. Text goes in through
// textContent only, so task data cannot inject markup.
"use strict"

const POLL_MS = 2000
const WINDOW_S = 15 * 60
// One sample per poll over the window, and a little slack.
const RING = Math.ceil(WINDOW_S * 1000 / POLL_MS) + 2
const FINAL = new Set(["succeeded", "failed", "cancelled"])
const TOKEN_KEY = "taskfiber.adminToken"

const $ = (id) => document.getElementById(id)

/** An element with text and attributes. */
function el(tag, text, attrs) {
  const e = document.createElement(tag)
  if (text !== undefined && text !== null) e.textContent = String(text)
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v)
  return e
}

function row(cells, attrs) {
  const tr = el("tr", null, attrs)
  for (const c of cells) tr.append(c instanceof Node ? wrap(c) : el("td", c))
  return tr
}

function wrap(node) {
  const td = el("td")
  td.append(node)
  return td
}

/**
 * Brings the table to `rows` in place: a row with the same `data-key` as one shown
 * keeps its element, and only its cells that changed are replaced, so a button
 * whose cell reads the same stays where it is (with its listener and focus) and a
 * click is never lost to a redraw between its press and its release.
 */
function fill(tbody, rows, empty) {
  if (rows.length === 0 && empty) rows = [row([el("span", empty, { class: "muted" })], { "data-key": "empty" })]
  const shown = new Map([...tbody.children].map((r) => [r.dataset.key, r]))
  rows.forEach((fresh, i) => {
    const key = fresh.dataset.key
    const kept = key === undefined ? undefined : shown.get(key)
    let node = fresh
    if (kept !== undefined) {
      shown.delete(key)
      for (const a of fresh.getAttributeNames()) kept.setAttribute(a, fresh.getAttribute(a))
      const cells = [...fresh.children]
      cells.forEach((cell, j) => {
        const old = kept.children[j]
        if (old === undefined) kept.append(cell)
        else if (old.outerHTML !== cell.outerHTML) old.replaceWith(cell)
      })
      while (kept.children.length > cells.length) kept.lastElementChild.remove()
      node = kept
    }
    if (tbody.children[i] !== node) tbody.insertBefore(node, tbody.children[i] ?? null)
  })
  while (tbody.children.length > rows.length) tbody.lastElementChild.remove()
}

const statusChip = (status) => el("span", status, { class: `status ${status}`, "data-status": status })

function ms(n) {
  if (n === null || n === undefined) return "–"
  if (n < 1000) return `${Math.round(n)} ms`
  const s = n / 1000
  if (s < 60) return `${s.toFixed(1)} s`
  return `${Math.floor(s / 60)}m ${String(Math.round(s % 60)).padStart(2, "0")}s`
}

const json = (v) => v === null || v === undefined ? "null" : JSON.stringify(v, null, 2)
const time = (iso) => iso ? new Date(iso).toLocaleTimeString() : "–"
/** A stored error in a line: the tagged error's tag and message, or its JSON. */
function errorText(e) {
  if (e === null || e === undefined) return ""
  if (typeof e === "object" && typeof e.message === "string") return `${e.tag || e._tag || "Error"}: ${e.message}`
  return typeof e === "string" ? e : JSON.stringify(e)
}

let askedForReads = false

async function getJson(path) {
  let r = await fetch(path, { headers: authHeaders(false) })
  // Reads need the token too (ADMIN_READ_TOKEN_REQUIRED): ask once, not at every poll.
  if (r.status === 401 && !askedForReads) {
    askedForReads = true
    sessionStorage.removeItem(TOKEN_KEY)
    const headers = authHeaders(true)
    if (headers !== null) r = await fetch(path, { headers })
  }
  const body = await r.json().catch(() => null)
  // /health answers 503 with its report when unhealthy: still a report.
  if (!r.ok && !(path === "/health" && body && body.status)) throw new Error(`${path}: ${r.status} ${body && body.detail || ""}`)
  return body
}

// ---------------------------------------------------------------------------
// the admin token: asked once, kept for the browser tab

function authHeaders(ask) {
  let token = sessionStorage.getItem(TOKEN_KEY)
  if (token === null && ask) {
    token = window.prompt("Admin token (leave empty when none is configured and the server is on loopback)", "")
    if (token === null) return null
    sessionStorage.setItem(TOKEN_KEY, token)
  }
  return token ? { authorization: `Bearer ${token}` } : {}
}

// ---------------------------------------------------------------------------
// Prometheus text

/** `[{ name, labels, value }]` of the exposition format's sample lines. */
function parseMetrics(text) {
  const out = []
  for (const line of text.split("\n")) {
    if (line === "" || line[0] === "#") continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line)
    if (!m) continue
    const labels = {}
    if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c)
    out.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return out
}

const sum = (samples, name) => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0)

// ---------------------------------------------------------------------------
// throughput: a bounded ring of counter samples; rates between neighbours

const ring = []
let chart = null

function record(samples) {
  ring.push({ t: Date.now() / 1000, ok: sum(samples, "taskfiber_tasks_succeeded_total"), failed: sum(samples, "taskfiber_tasks_failed_total") })
  while (ring.length > RING || (ring.length > 0 && ring[0].t < Date.now() / 1000 - WINDOW_S)) ring.shift()
}

function rates() {
  const xs = [], ok = [], failed = []
  for (let i = 1; i < ring.length; i++) {
    const a = ring[i - 1], b = ring[i], dt = b.t - a.t
    if (dt <= 0) continue
    // A counter that went down is a restart: count from zero again.
    const dOk = b.ok >= a.ok ? b.ok - a.ok : b.ok
    const dFailed = b.failed >= a.failed ? b.failed - a.failed : b.failed
    xs.push(b.t); ok.push(dOk / dt); failed.push(dFailed / dt)
  }
  return [xs, ok, failed]
}

function drawThroughput() {
  const data = rates()
  const box = $("throughput-chart")
  const width = Math.max(300, box.clientWidth)
  if (typeof uPlot === "function") {
    if (chart === null) {
      chart = new uPlot({
        width, height: 220,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
        series: [{}, { label: "succeeded/s", stroke: "#1a7f37", width: 2 }, { label: "failed/s", stroke: "#c62828", width: 2 }],
        axes: [{}, { label: "per second" }]
      }, data, box)
    } else {
      if (Math.abs(chart.width - width) > 4) chart.setSize({ width, height: 220 })
      chart.setData(data)
    }
  }
  let ok = 0, failed = 0
  for (let i = 1; i < ring.length; i++) {
    const a = ring[i - 1], b = ring[i]
    ok += b.ok >= a.ok ? b.ok - a.ok : b.ok
    failed += b.failed >= a.failed ? b.failed - a.failed : b.failed
  }
  const runs = ok + failed
  $("error-rate").textContent = runs === 0 ? "–" : `${(100 * failed / runs).toFixed(1)} %`
  const span = ring.length > 1 ? ring[ring.length - 1].t - ring[0].t : 0
  $("error-rate-detail").textContent = `${failed} failed of ${runs} runs in the last ${ms(span * 1000)}`
}

// ---------------------------------------------------------------------------
// panels

/**
 * The q-quantile of a cumulative histogram (`buckets`: upper bound → count at or
 * below it, `+Inf` the total), interpolated linearly inside its bucket as
 * Prometheus's histogram_quantile does; past the last finite bound, that bound.
 */
function quantile(q, buckets) {
  const bounds = [...buckets.keys()].sort((a, b) => a - b)
  const total = buckets.get(Infinity) || 0
  if (total === 0) return null
  const rank = q * total
  let lower = 0, below = 0
  for (const upper of bounds) {
    const count = buckets.get(upper)
    if (count >= rank) {
      if (upper === Infinity) return lower
      return count === below ? upper : lower + (upper - lower) * (rank - below) / (count - below)
    }
    lower = upper
    below = count
  }
  return lower
}

function drawMetrics(samples) {
  // Run time by job type, queues summed: the average is the histogram's sum over
  // its count, the p95 from its buckets.
  const byType = new Map()
  const of = (type) => {
    let t = byType.get(type)
    if (!t) byType.set(type, t = { sum: 0, count: 0, buckets: new Map() })
    return t
  }
  for (const s of samples) {
    if (!s.name.startsWith("taskfiber_task_run_seconds_")) continue
    const t = of(s.labels.type || "(none)")
    if (s.name === "taskfiber_task_run_seconds_sum") t.sum += s.value
    else if (s.name === "taskfiber_task_run_seconds_count") t.count += s.value
    else if (s.name === "taskfiber_task_run_seconds_bucket") {
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le)
      t.buckets.set(le, (t.buckets.get(le) || 0) + s.value)
    }
  }
  fill($("run-times"), [...byType].filter(([, t]) => t.count > 0).sort((a, b) => a[0].localeCompare(b[0])).map(([type, t]) => {
    const p95 = quantile(0.95, t.buckets)
    return row([type, el("span", t.count), ms(1000 * t.sum / t.count), el("span", p95 === null ? "–" : ms(1000 * p95), { class: "p95" })], { "data-key": type, "data-type": type })
  }), "no runs yet")

  const inUse = samples.find((s) => s.name === "taskfiber_pool_connections" && s.labels.state === "in_use")
  const idle = samples.find((s) => s.name === "taskfiber_pool_connections" && s.labels.state === "idle")
  const max = samples.find((s) => s.name === "taskfiber_pool_connections_max")
  $("pool-in-use").textContent = inUse ? String(inUse.value) : "–"
  $("pool-detail").textContent = [idle && `${idle.value} idle`, max && `of ${max.value} at most`].filter(Boolean).join(", ")

  const lag = samples.filter((s) => s.name === "taskfiber_kafka_consumer_lag")
  $("kafka-panel").hidden = lag.length === 0
  fill($("kafka-lag"), lag.map((s) => row([s.labels.topic || "", s.labels.partition || "", String(s.value)], { "data-key": `${s.labels.topic}/${s.labels.partition}` })))
}

function drawHealth(report) {
  const status = report.status
  for (const e of [$("health-badge"), $("health-status")]) {
    e.textContent = status
    e.className = e.id === "health-badge" ? `badge ${status}` : status
  }
  fill($("health-findings"), report.findings.map((f) =>
    row([f.check, el("span", f.status, { class: `badge ${f.status}` }), f.message, f.recommendation || ""], { "data-key": f.check })
  ), "no findings yet")
  const un = report.unmeasured || []
  $("health-unmeasured").textContent = un.length ? `Not measured: ${un.map((u) => `${u.check} (${u.reason})`).join("; ")}` : ""
}

function drawQueues(queues) {
  fill($("queues"), queues.map((q) => {
    const band = (b) => String(q.depth.filter((d) => d.band === b && d.status !== "running").reduce((a, d) => a + d.tasks, 0))
    const state = el("span")
    if (q.paused) state.append(el("span", `paused${q.paused.reason ? `: ${q.paused.reason}` : ""}`, { class: "badge DEGRADED" }), " ")
    state.append(q.paused
      ? actionButton("Resume", "resume", queuePath(q.queue, "resume"), () => resumeQueue(q.queue))
      : actionButton("Pause", "pause", queuePath(q.queue, "pause"), () => pauseQueue(q.queue)))
    return row([q.queue, band("high"), band("normal"), band("low"), String(q.ready), String(q.running), ms(q.oldestReadyMs), state],
      { "data-key": q.queue, "data-queue": q.queue, "data-paused": String(q.paused !== null) })
  }), "no queues")
}

/** Where a Kafka letter came from, as the binary writes it: `topic[partition]@offset`. */
const kafkaPlace = (k) => `${k.topic}${k.partition === null ? "" : `[${k.partition}]`}${k.offset === null ? "" : `@${k.offset}`}`

function drawFailures(page) {
  fill($("failures"), page.letters.map((l) => {
    // Input that never became a task has nothing to replay: fix the producer.
    const action = l.replayedAt
      ? el("span", `replayed ${time(l.replayedAt)}`, { class: "muted" })
      : l.taskId === null
      ? ""
      : actionButton("Replay", "replay", letterPath(l.id), () => replayLetter(l))
    return row([
      time(l.createdAt), l.type || "–",
      l.taskId ? el("a", l.taskId, { href: `#/tasks/${l.taskId}`, class: "id" }) : el("span", l.kafka ? kafkaPlace(l.kafka) : l.source, { class: "id" }),
      l.reason, errorText(l.error), action
    ], { "data-key": l.id, "data-letter-id": l.id })
  }), "no failures")
}

function drawTasks(page) {
  fill($("recent-tasks"), page.tasks.map((t) =>
    row([
      el("a", t.id, { href: `#/tasks/${t.id}`, class: "id" }), t.type, t.queue, statusChip(t.status),
      `${t.attempt}/${t.maxAttempts}`, time(t.updatedAt), errorText(t.lastError)
    ], { "data-key": t.id, "data-task-id": t.id })
  ), "no tasks")
}

function drawTask(detail) {
  const t = detail.task
  $("task-id").textContent = t.id
  $("task-status").replaceChildren(statusChip(t.status))
  $("cancel-button").disabled = FINAL.has(t.status) || inFlight.has(taskPath(t.id, "cancel"))
  // Retry is for a failed task (the API refuses any other with 409).
  $("retry-button").disabled = t.status !== "failed" || inFlight.has(taskPath(t.id, "retry"))
  const fields = [["type", t.type], ["queue", t.queue], ["attempt", `${t.attempt} of ${t.maxAttempts}`], ["priority", t.priority],
    ["run at", t.runAt], ["worker", t.workerId || "–"], ["lease expires", t.leaseExpiresAt || "–"], ["dedupe key", t.dedupeKey || "–"],
    ["created", t.createdAt], ["updated", t.updatedAt]]
  $("task-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", k), el("dd", v)]))
  fill($("task-events"), detail.events.map((e) =>
    row([String(e.seq), new Date(e.at).toLocaleString(), `${e.from || "∅"} → ${e.to}`, String(e.attempt), e.workerId || "", errorText(e.error)], { "data-key": String(e.seq) })
  ))
  $("task-progress").textContent = json(t.progress)
  $("task-checkpoint").textContent = json(t.checkpoint)
  $("task-payload").textContent = json(t.payload)
  $("task-result").textContent = json(t.result)
  $("task-error").textContent = t.lastError ? json(t.lastError) : "none"
}

// ---------------------------------------------------------------------------
// routing and polling

const taskIdOf = () => {
  const m = /^#\/tasks\/([^/?]+)/.exec(location.hash)
  return m ? decodeURIComponent(m[1]) : null
}

/** The calls under way, by path: their buttons stay disabled until the answer is in. */
const inFlight = new Set()

/** A button for the call to `path`, disabled while one is under way. */
function actionButton(label, action, path, run) {
  const b = el("button", label, { type: "button", "data-action": action })
  b.disabled = inFlight.has(path)
  b.addEventListener("click", run)
  return b
}

/**
 * A state-changing call with the admin token (asked once per browser session);
 * `done` words the answer. While it is under way its button is disabled (redraws
 * too), so a second click cannot send it again; a 401 forgets the token, so the
 * next action asks again.
 */
async function act(out, path, body, done) {
  if (inFlight.has(path)) return
  const headers = authHeaders(true)
  if (headers === null) return
  inFlight.add(path)
  refresh(true)
  out.textContent = "…"
  try {
    const r = await fetch(path, body
      ? { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(body) }
      : { method: "POST", headers })
    const answer = await r.json().catch(() => null)
    if (r.status === 401) sessionStorage.removeItem(TOKEN_KEY)
    out.textContent = !r.ok
      ? `refused: ${r.status} ${answer && answer.detail || ""}`
      : answer === null
      ? `unexpected answer: ${r.status} without JSON`
      : done(answer)
  } catch (e) {
    out.textContent = `failed: ${e.message}`
  }
  inFlight.delete(path)
  refresh(true)
}

const taskPath = (id, action) => `/tasks/${encodeURIComponent(id)}/${action}`
const queuePath = (queue, action) => `/queues/${encodeURIComponent(queue)}/${action}`
const letterPath = (id) => `/dead-letters/${encodeURIComponent(id)}/replay`

function cancelTask() {
  const id = taskIdOf()
  if (id) {
    void act($("action-result"), taskPath(id, "cancel"), null, (a) =>
      a.cancelled ? `cancelled (was ${a.previousStatus})` : `not cancelled: it is ${a.status} already`)
  }
}

function retryTask() {
  const id = taskIdOf()
  if (id) void act($("action-result"), taskPath(id, "retry"), null, (t) => `queued again (attempt ${t.attempt} of ${t.maxAttempts})`)
}

const pauseQueue = (queue) =>
  act($("queues-result"), queuePath(queue, "pause"), { reason: "paused from the dashboard" }, (a) =>
    a.changed ? `${queue} paused: its tasks wait` : `${queue} was paused already`)

const resumeQueue = (queue) =>
  act($("queues-result"), queuePath(queue, "resume"), null, (a) =>
    a.changed ? `${queue} resumed` : `${queue} was not paused`)

const replayLetter = (letter) =>
  act($("failures-result"), letterPath(letter.id), null, (a) => `replayed: task ${a.task.id} is ${a.task.status} again`)

let running = false
let again = false

/**
 * One poll at a time: a slow server gets no pile of requests, and the timer's
 * ticks during a poll are skipped. One `asked` for meanwhile (an action, a new
 * page) runs once this one ends, so it reads the change.
 */
async function refresh(asked = false) {
  if (running) {
    again ||= asked
    return
  }
  running = true
  const errors = []
  const taskId = taskIdOf()
  $("overview").hidden = taskId !== null
  $("task-page").hidden = taskId === null
  const step = (p) => p.catch((e) => { errors.push(e.message) })
  try {
    await Promise.all([
      step(fetch("/metrics").then((r) => r.text()).then((text) => {
        const samples = parseMetrics(text)
        record(samples)
        if (taskId === null) { drawMetrics(samples); drawThroughput() }
      })),
      step(getJson("/health").then(drawHealth)),
      ...(taskId === null
        ? [
          step(getJson("/queues").then(drawQueues)),
          step(getJson("/dead-letters?limit=10").then(drawFailures)),
          step(getJson("/tasks?limit=20&order=desc").then(drawTasks))
        ]
        : [step(getJson(`/tasks/${encodeURIComponent(taskId)}`).then(drawTask))])
    ])
  } finally {
    running = false
  }
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`
  const pe = $("poll-error")
  pe.hidden = errors.length === 0
  pe.textContent = errors.join("; ")
  if (again) {
    again = false
    refresh()
  }
}

window.addEventListener("hashchange", () => {
  for (const id of ["action-result", "queues-result", "failures-result"]) $(id).textContent = ""
  refresh(true)
})
$("cancel-button").addEventListener("click", cancelTask)
$("retry-button").addEventListener("click", retryTask)
refresh()
setInterval(refresh, POLL_MS)
