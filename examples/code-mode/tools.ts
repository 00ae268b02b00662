/**
 * Tools for code mode, in the tools-module format `keel exec --tool` and `keel mcp serve --tool`
 * load: a default export that is an array of tool definitions (name, description for the model,
 * JSON Schemas, and `run`). Nothing here reaches the network, so the demo gives the same answers
 * everywhere.
 *
 * ```sh
 * keel exec examples/code-mode/plan.js --tool examples/code-mode/tools.ts --context '{"userId":"u1"}'
 * keel mcp serve --tool examples/code-mode/tools.ts
 * ```
 * @module
 */

import type { ToolDefinition } from "../../mod.ts";

/** What `weather` knows: a fixed table, standing in for a weather API. */
const WEATHER: Readonly<Record<string, { tempC: number; conditions: string }>> = {
  oslo: { tempC: 4, conditions: "rain" },
  lisbon: { tempC: 19, conditions: "sunny" },
  tokyo: { tempC: 12, conditions: "cloudy" },
  nairobi: { tempC: 23, conditions: "sunny" },
};

interface WeatherInput {
  readonly city: string;
  readonly units?: "c" | "f";
}

interface Weather {
  readonly city: string;
  readonly temperature: number;
  readonly units: "c" | "f";
  readonly conditions: string;
}

/** Current weather for one city, from the table above. */
export const weather: ToolDefinition<WeatherInput, Weather> = {
  name: "weather",
  description: `Current weather for a city (one of: ${Object.keys(WEATHER).join(", ")}). Temperatures in Celsius unless units is "f"`,
  inputSchema: {
    type: "object",
    properties: {
      city: { type: "string", minLength: 1, description: "City name, any case" },
      units: { enum: ["c", "f"], description: "Temperature units; default c" },
    },
    required: ["city"],
    additionalProperties: false,
  },
  outputSchema: {
    type: "object",
    properties: {
      city: { type: "string" },
      temperature: { type: "number" },
      units: { enum: ["c", "f"] },
      conditions: { type: "string" },
    },
    required: ["city", "temperature", "units", "conditions"],
  },
  run({ city, units = "c" }) {
    const row = WEATHER[city.trim().toLowerCase()];
    if (row === undefined) throw new Error(`No weather for "${city}"; known cities: ${Object.keys(WEATHER).join(", ")}`);
    const temperature = units === "f" ? Math.round((row.tempC * 9) / 5 + 32) : row.tempC;
    return { city: city.trim(), temperature, units, conditions: row.conditions };
  },
};

interface AddInput {
  readonly numbers: readonly number[];
}

/** The sum of a list of numbers. */
export const add: ToolDefinition<AddInput, number> = {
  name: "add",
  description: "Adds a list of numbers and returns the sum",
  inputSchema: {
    type: "object",
    properties: { numbers: { type: "array", items: { type: "number" }, minItems: 1 } },
    required: ["numbers"],
    additionalProperties: false,
  },
  outputSchema: { type: "number" },
  run: ({ numbers }) => numbers.reduce((sum, n) => sum + n, 0),
};

/** Who is asking: the `userId` the host put in the runtime context (`--context`). */
export const whoami: ToolDefinition<Record<string, never>, { userId: string | null }> = {
  name: "whoami",
  description: "The id of the user this code runs for, from the host's runtime context (null when none was given)",
  inputSchema: { type: "object", properties: {}, additionalProperties: false },
  outputSchema: { type: "object", properties: { userId: { type: ["string", "null"] } }, required: ["userId"] },
  run: (_input, { context }) => ({ userId: typeof context.userId === "string" ? context.userId : null }),
};

export default [weather, add, whoami];
