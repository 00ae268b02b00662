/**
 * A plugin that asks for network access to one host. Without the grant the kernel refuses to
 * load it (`E_CAPABILITY_DENIED`, naming `net:api.example.com:443` and how to grant it).
 * @module
 */

import { definePlugin } from "../../mod.ts";

/** The weather plugin: `weather/v1` would call api.example.com. */
export default definePlugin({
  name: "weather",
  version: "0.1.0",
  kernel: "^1",
  description: "Answers weather/v1 by calling api.example.com",
  capabilities: ["net:api.example.com:443"],
  setup(ctx) {
    return {
      resolveExecutor: (protocol) =>
        protocol !== "weather/v1" ? undefined : {
          protocol,
          methods: ["weather/today"],
          async execute(request) {
            // ctx.fetch checks the grant on every call, redirects included.
            const response = await ctx.fetch(
              `https://api.example.com/today?city=${String(request.params.city)}`,
            );
            return await response.json();
          },
        },
    };
  },
});
