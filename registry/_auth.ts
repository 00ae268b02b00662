/**
 * Tokens and passwords. A token is `keel_` and 256 random bits (base64url); only its SHA-256 is
 * stored, which is right for a secret of that entropy (a slow hash would only slow every request
 * down). Passwords, chosen by people, are stretched with PBKDF2-SHA256 and checked at login only.
 * @module
 */

import { KeelError } from "../core/errors.ts";
import type { RegistryDb, TokenRecord, TokenScope } from "./db.ts";
import { TOKEN_SCOPES } from "./db.ts";

const utf8 = new TextEncoder();

/** OWASP's 2023 figure for PBKDF2-HMAC-SHA256. */
export const PASSWORD_ITERATIONS = 600_000;

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array | undefined {
  try {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  } catch {
    return undefined;
  }
}

function hex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** Compares two byte strings without an early exit. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** The SHA-256 hex of a token: what the tokens table keys on. */
export async function hashToken(token: string): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", utf8.encode(token))));
}

/** A new random token. */
export function generateToken(): string {
  return "keel_" + base64url(crypto.getRandomValues(new Uint8Array(32)));
}

/** True for something shaped like a token this registry hands out (cheap check before hashing). */
export function looksLikeToken(text: string): boolean {
  return /^[\x21-\x7e]{16,512}$/.test(text);
}

async function pbkdf2(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", utf8.encode(password), "PBKDF2", false, ["deriveBits"]);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt: salt as Uint8Array<ArrayBuffer>, iterations }, key, 256));
}

/** `pbkdf2-sha256$<iterations>$<salt>$<hash>` for a new password. */
export async function hashPassword(password: string, iterations = PASSWORD_ITERATIONS): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  return `pbkdf2-sha256$${iterations}$${base64(salt)}$${base64(await pbkdf2(password, salt, iterations))}`;
}

/** True when `password` matches a {@link hashPassword} string; false for a malformed one. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [kind, rounds, salt64, hash64] = stored.split("$");
  const iterations = Number(rounds);
  const salt = salt64 === undefined ? undefined : fromBase64(salt64);
  const expected = hash64 === undefined ? undefined : fromBase64(hash64);
  if (kind !== "pbkdf2-sha256" || !Number.isSafeInteger(iterations) || iterations < 1 || salt === undefined || expected === undefined) {
    return false;
  }
  return constantTimeEqual(await pbkdf2(password, salt, iterations), expected);
}

/** What {@link issueToken} takes. */
export interface IssueTokenOptions {
  readonly user: string;
  readonly scope: TokenScope;
  /** Limits the token to packages of this scope ("@acme" or "acme"). */
  readonly packageScope?: string | undefined;
  /** Absolute expiry in ms since the epoch; undefined for none. */
  readonly expiresAt?: number | undefined;
  readonly description?: string | undefined;
  /** Creates the user (with no password) when missing; default true. */
  readonly createUser?: boolean;
  readonly now?: number;
}

/** A valid user name: what npm accepts, kept to lowercase ASCII. */
export const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Creates a token and stores its hash; the token itself is returned once and never again.
 * @throws {KeelError} `E_REGISTRY_REQUEST_INVALID` for a bad user name, scope or package scope;
 * `E_REGISTRY_NOT_FOUND` when the user does not exist and `createUser` is false.
 */
export async function issueToken(db: RegistryDb, options: IssueTokenOptions): Promise<{ token: string; record: TokenRecord }> {
  const now = options.now ?? Date.now();
  if (!USER_NAME.test(options.user)) {
    throw new KeelError("E_REGISTRY_REQUEST_INVALID", `User name ${JSON.stringify(options.user)} is invalid: use 1-64 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit`);
  }
  if (!TOKEN_SCOPES.includes(options.scope)) {
    throw new KeelError("E_REGISTRY_REQUEST_INVALID", `Token scope ${JSON.stringify(options.scope)} is invalid; use ${TOKEN_SCOPES.map((s) => `"${s}"`).join(", ")}`);
  }
  let packageScope: string | null = null;
  if (options.packageScope !== undefined) {
    packageScope = options.packageScope.replace(/^@/, "");
    if (!/^[a-z0-9][a-z0-9._-]{0,213}$/.test(packageScope)) {
      throw new KeelError("E_REGISTRY_REQUEST_INVALID", `Package scope ${JSON.stringify(options.packageScope)} is invalid; write it as "@acme"`);
    }
  }
  if (options.expiresAt !== undefined && !(Number.isFinite(options.expiresAt) && options.expiresAt > now)) {
    throw new KeelError("E_REGISTRY_REQUEST_INVALID", "A token's expiry must be in the future");
  }
  if ((await db.getUser(options.user)) === undefined) {
    if (options.createUser === false) throw new KeelError("E_REGISTRY_NOT_FOUND", `No user "${options.user}" exists in this registry`);
    await db.createUser({ name: options.user, email: null, passwordHash: null, createdAt: now });
  }
  const token = generateToken();
  const record: TokenRecord = {
    id: hex(crypto.getRandomValues(new Uint8Array(6))),
    user: options.user,
    scope: options.scope,
    packageScope,
    createdAt: now,
    expiresAt: options.expiresAt ?? null,
    description: options.description ?? null,
  };
  await db.createToken({ ...record, hash: await hashToken(token) });
  return { token, record };
}
