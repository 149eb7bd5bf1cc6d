/**
 * A TCP proxy on a loopback port that a test can cut (every connection dropped,
 * new ones refused) and restore: a database outage on demand, without touching
 * the shared server.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net"
import { Effect } from "effect"
import { freePort } from "./freePort.ts"

/** A proxy to `target`, listening on `port` while it is up. */
export interface TcpProxy {
  readonly port: number
  /** Drops every open connection and stops accepting new ones (they are refused). */
  readonly cut: Effect.Effect<void>
  /** Accepts connections again, on the same port. */
  readonly restore: Effect.Effect<void>
}

/** A proxy to `target`, up for the scope's lifetime. */
export const make = (target: { readonly host: string; readonly port: number }) =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(freePort)
    const sockets = new Set<Socket>()
    let server: Server | undefined
    const track = (socket: Socket) => {
      sockets.add(socket)
      socket.once("close", () => sockets.delete(socket))
    }
    const listen = Effect.callback<void>((resume) => {
      const s = createServer((client) => {
        const upstream = createConnection(target)
        track(client)
        track(upstream)
        client.on("error", () => upstream.destroy())
        upstream.on("error", () => client.destroy())
        client.pipe(upstream).pipe(client)
      })
      server = s
      s.listen(port, "127.0.0.1", () => resume(Effect.void))
    })
    const close = Effect.callback<void>((resume) => {
      const s = server
      server = undefined
      for (const socket of sockets) socket.destroy()
      sockets.clear()
      if (s === undefined) return resume(Effect.void)
      s.close(() => resume(Effect.void))
    })
    yield* Effect.acquireRelease(listen, () => close)
    return { port, cut: close, restore: listen } satisfies TcpProxy
  })
