/**
 * Hook dispatch: each hook has a kind (first / sequential / parallel) from {@link HOOK_KINDS};
 * handlers run in plugin order, with `order: "pre"` ones first and `order: "post"` ones last.
 * @module
 */

import { editDistance } from "./capabilities.ts";
import { errorMessage, KeelError } from "./errors.ts";
import { HOOK_KINDS, type HookName, type Hooks, type HookSignatures } from "./plugin.ts";

/** One registered handler. */
export interface HookHandler {
  readonly plugin: string;
  readonly order: "pre" | "post" | null;
  readonly fn: (...args: never[]) => unknown;
}

/** All hook names, in table order. */
export const HOOK_NAMES = Object.keys(HOOK_KINDS) as HookName[];

/** The arguments of hook `K`. */
export type HookArgs<K extends HookName> = Parameters<HookSignatures[K]>;

/** What calling hook `K` resolves to: the first result for `first` hooks, else nothing. */
export type HookResult<K extends HookName> = (typeof HOOK_KINDS)[K] extends "first"
  ? Awaited<ReturnType<HookSignatures[K]>>
  : void;

/**
 * Checks what a plugin's `setup` returned.
 *
 * @throws {KeelError} `E_PLUGIN_HOOK_UNKNOWN` (with a suggestion), `E_PLUGIN_HOOK_INVALID`
 */
export function validateHooks(plugin: string, hooks: unknown): Hooks {
  if (hooks === undefined || hooks === null) return {};
  if (typeof hooks !== "object" || Array.isArray(hooks)) {
    throw new KeelError(
      "E_PLUGIN_HOOK_INVALID",
      `Plugin "${plugin}" setup() must return an object of hooks or nothing, got ${Array.isArray(hooks) ? "an array" : typeof hooks}`,
      { details: { plugin } },
    );
  }
  for (const [name, value] of Object.entries(hooks)) {
    if (!Object.hasOwn(HOOK_KINDS, name)) {
      const near = HOOK_NAMES.filter((h) => editDistance(h.toLowerCase(), name.toLowerCase()) <= 2);
      throw new KeelError(
        "E_PLUGIN_HOOK_UNKNOWN",
        `Plugin "${plugin}" returned hook "${name}", which does not exist` +
          (near.length ? `; did you mean "${near[0]}"?` : `; hooks are ${HOOK_NAMES.join(", ")}`),
        { details: { plugin, hook: name } },
      );
    }
    if (value === undefined || typeof value === "function") continue;
    const v = value as { order?: unknown; handler?: unknown };
    const orderOk = v?.order === undefined || v.order === null || v.order === "pre" || v.order === "post";
    if (typeof v !== "object" || v === null || typeof v.handler !== "function" || !orderOk) {
      throw new KeelError(
        "E_PLUGIN_HOOK_INVALID",
        `Plugin "${plugin}" hook "${name}" must be a function or { order: "pre" | "post", handler }`,
        { details: { plugin, hook: name } },
      );
    }
  }
  return hooks as Hooks;
}

function wrap(hook: string, plugin: string, e: unknown): KeelError {
  if (KeelError.is(e)) return e;
  return new KeelError("E_HOOK_FAILED", `Plugin "${plugin}" failed in hook "${hook}": ${errorMessage(e)}`, {
    cause: e,
    details: { plugin, hook },
  });
}

/** Handlers per hook, already sorted; built once at boot. */
export class HookTable {
  readonly #handlers = new Map<HookName, HookHandler[]>();

  constructor(byPlugin: readonly { plugin: string; hooks: Hooks }[]) {
    for (const name of HOOK_NAMES) {
      const list: HookHandler[] = [];
      for (const { plugin, hooks } of byPlugin) {
        const value = hooks[name];
        if (value === undefined) continue;
        if (typeof value === "function") list.push({ plugin, order: null, fn: value as HookHandler["fn"] });
        else list.push({ plugin, order: value.order ?? null, fn: value.handler as HookHandler["fn"] });
      }
      const rank = (h: HookHandler) => (h.order === "pre" ? 0 : h.order === "post" ? 2 : 1);
      list.sort((a, b) => rank(a) - rank(b)); // stable: plugin order within a rank
      if (name === "dispose") list.reverse();
      this.#handlers.set(name, list);
    }
  }

  /** The plugins that handle `name`, in call order. */
  pluginsFor(name: HookName): string[] {
    return (this.#handlers.get(name) ?? []).map((h) => h.plugin);
  }

  /** Calls hook `name` the way its kind says. */
  call<K extends HookName>(name: K, ...args: HookArgs<K>): Promise<HookResult<K>> {
    const kind = HOOK_KINDS[name] as string | undefined;
    const handlers = this.#handlers.get(name);
    if (kind === undefined || handlers === undefined) {
      return Promise.reject(new KeelError("E_HOOK_UNKNOWN", `Hook "${String(name)}" does not exist; hooks are ${HOOK_NAMES.join(", ")}`));
    }
    if (kind === "parallel") return this.#parallel(name, handlers, args) as Promise<HookResult<K>>;
    if (kind === "first") return this.#first(name, handlers, args) as Promise<HookResult<K>>;
    return this.#sequential(name, handlers, args) as Promise<HookResult<K>>;
  }

  /**
   * Calls every handler of hook `name` in order, whatever its kind, and returns the failures
   * instead of throwing: one plugin failing does not keep the others from running (the training
   * lifecycle reports a failing plugin and goes on).
   */
  async callSettled<K extends HookName>(name: K, ...args: HookArgs<K>): Promise<KeelError[]> {
    const handlers = this.#handlers.get(name);
    if (handlers === undefined) {
      throw new KeelError("E_HOOK_UNKNOWN", `Hook "${String(name)}" does not exist; hooks are ${HOOK_NAMES.join(", ")}`);
    }
    const failures: KeelError[] = [];
    for (const h of handlers) {
      try {
        await (h.fn as (...a: unknown[]) => unknown)(...args);
      } catch (e) {
        failures.push(wrap(name, h.plugin, e));
      }
    }
    return failures;
  }

  /** True when some plugin handles `name` (callers skip building arguments otherwise). */
  has(name: HookName): boolean {
    return (this.#handlers.get(name)?.length ?? 0) > 0;
  }

  async #first(name: string, handlers: readonly HookHandler[], args: unknown[]): Promise<unknown> {
    for (const h of handlers) {
      let result: unknown;
      try {
        result = await (h.fn as (...a: unknown[]) => unknown)(...args);
      } catch (e) {
        throw wrap(name, h.plugin, e);
      }
      if (result !== null && result !== undefined) return result;
    }
    return undefined;
  }

  async #sequential(name: string, handlers: readonly HookHandler[], args: unknown[]): Promise<void> {
    for (const h of handlers) {
      try {
        await (h.fn as (...a: unknown[]) => unknown)(...args);
      } catch (e) {
        throw wrap(name, h.plugin, e);
      }
    }
  }

  #parallel(name: string, handlers: readonly HookHandler[], args: unknown[]): Promise<void> {
    // Sync handlers finish without allocating a promise each: this hook is on hot paths.
    let pending: Promise<unknown>[] | undefined;
    let owners: string[] | undefined;
    const failures: KeelError[] = [];
    for (const h of handlers) {
      try {
        const r = (h.fn as (...a: unknown[]) => unknown)(...args);
        if (r !== null && typeof r === "object" && typeof (r as { then?: unknown }).then === "function") {
          (pending ??= []).push(r as Promise<unknown>);
          (owners ??= []).push(h.plugin);
        }
      } catch (e) {
        failures.push(wrap(name, h.plugin, e));
      }
    }
    if (!pending) return failures.length ? Promise.reject(combine(name, failures)) : Promise.resolve();
    const who = owners!;
    return Promise.allSettled(pending).then((settled) => {
      settled.forEach((s, i) => {
        if (s.status === "rejected") failures.push(wrap(name, who[i]!, s.reason));
      });
      if (failures.length) throw combine(name, failures);
    });
  }
}

function combine(name: string, failures: KeelError[]): KeelError {
  if (failures.length === 1) return failures[0]!;
  return new KeelError(
    "E_HOOK_FAILED",
    `${failures.length} plugins failed in hook "${name}": ${failures.map((f) => f.message).join("; ")}`,
    { cause: new AggregateError(failures), details: { hook: name, plugins: failures.map((f) => f.details?.plugin) } },
  );
}
