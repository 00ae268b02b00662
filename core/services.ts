/**
 * Typed service keys: one plugin provides a service, others require it by key.
 * @module
 */

import { KeelError } from "./errors.ts";

/** A typed key for a service. The type parameter is phantom: it only carries `T`. */
export interface ServiceKey<T> {
  readonly id: string;
  /** Never set; carries the service type for inference. */
  readonly __type?: T;
}

/**
 * Defines a service key. Two keys with the same id name the same service.
 *
 * @example
 * ```ts
 * import { defineService } from "./services.ts";
 * const Metrics = defineService<{ mean(xs: number[]): number }>("metrics");
 * if (Metrics.id !== "metrics") throw new Error("unreachable");
 * ```
 */
export function defineService<T>(id: string): ServiceKey<T> {
  if (typeof id !== "string" || !/^[a-z][a-z0-9-]*(?:\/[a-z0-9-]+)*$/.test(id)) {
    throw new TypeError(`Service id "${String(id)}" must be lowercase words joined by '-' or '/'`);
  }
  return Object.freeze({ id });
}

/** Read access to provided services. */
export interface Services {
  /** True when some plugin provides `key`. */
  has(key: ServiceKey<unknown>): boolean;
  /**
   * The service for `key`.
   * @throws {KeelError} `E_SERVICE_MISSING` when no plugin provides it.
   */
  get<T>(key: ServiceKey<T>): T;
  /** Service ids with the plugin that provides each. */
  list(): { id: string; provider: string }[];
}

/** The kernel's service table; `provide` is reached through a plugin's context. */
export class ServiceTable implements Services {
  readonly #entries = new Map<string, { value: unknown; provider: string }>();

  provide<T>(key: ServiceKey<T>, value: T, provider: string): void {
    const existing = this.#entries.get(key.id);
    if (existing) {
      throw new KeelError(
        "E_SERVICE_DUPLICATE",
        `Service "${key.id}" is provided by both "${existing.provider}" and "${provider}"; load only one of them`,
        { details: { service: key.id, providers: [existing.provider, provider] } },
      );
    }
    this.#entries.set(key.id, { value, provider });
  }

  has(key: ServiceKey<unknown>): boolean {
    return this.#entries.has(key.id);
  }

  get<T>(key: ServiceKey<T>, requester?: string): T {
    const entry = this.#entries.get(key.id);
    if (!entry) {
      const who = requester ? `Plugin "${requester}" requires` : "Asked for";
      throw new KeelError(
        "E_SERVICE_MISSING",
        `${who} service "${key.id}" but no loaded plugin provides it; load a plugin that provides ` +
          `"${key.id}"${requester ? ` and list it in "${requester}".requires so it is set up first` : ""}`,
        { details: { service: key.id, ...(requester ? { plugin: requester } : {}) } },
      );
    }
    return entry.value as T;
  }

  list(): { id: string; provider: string }[] {
    return [...this.#entries].map(([id, e]) => ({ id, provider: e.provider }));
  }

  removeProvider(provider: string): void {
    for (const [id, e] of this.#entries) if (e.provider === provider) this.#entries.delete(id);
  }
}
