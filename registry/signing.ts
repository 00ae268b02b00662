/**
 * Registry signatures as the npm registry makes them, so `npm audit signatures` verifies Keel's:
 * ECDSA P-256 with SHA-256 over `${name}@${version}:${integrity}`, the signature DER-encoded and
 * base64'd into a version's `dist.signatures` as `{ keyid, sig }`, the public keys served at
 * `/-/npm/v1/keys` as {@link keysDocument} builds them.
 *
 * The keyid is npm's: "SHA256:" and the unpadded base64 SHA-256 of the key in SSH wire format
 * (an OpenSSH fingerprint), which reproduces the keyids of npm's own published keys.
 * WebCrypto signs ECDSA as raw r||s (IEEE P1363); the DER conversion is done here.
 * @module
 */

/** A registry signing key: the private half for signing, the public half to publish. */
export interface SigningKey {
  /** npm's key id, "SHA256:<unpadded base64>". */
  readonly keyid: string;
  /** The public key as base64 SPKI DER (the `key` of the keys document). */
  readonly publicKey: string;
  /** A non-extractable ECDSA P-256 private key. */
  readonly privateKey: CryptoKey;
}

/** One entry of the `/-/npm/v1/keys` document. */
export interface PublishedKey {
  readonly expires: string | null;
  readonly keyid: string;
  readonly keytype: "ecdsa-sha2-nistp256";
  readonly scheme: "ecdsa-sha2-nistp256";
  readonly key: string;
}

/** One entry of a version's `dist.signatures`. */
export interface VersionSignature {
  readonly keyid: string;
  /** Base64 of the DER-encoded ECDSA signature. */
  readonly sig: string;
}

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
const KEY_TYPE = "ecdsa-sha2-nistp256";
/** P-256 scalars and coordinates are 32 bytes. */
const SIZE = 32;
const utf8 = new TextEncoder();

/**
 * Makes a new signing key. Keep `privateJwk` secret (it holds the private scalar); load it again
 * with {@link importSigningKey}.
 */
export async function generateSigningKey(): Promise<{ key: SigningKey; privateJwk: JsonWebKey }> {
  const pair = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const privateJwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  return { key: await importSigningKey(privateJwk), privateJwk };
}

/**
 * Loads a signing key from its private JWK (as {@link generateSigningKey} returned it).
 * @throws {TypeError} When the JWK is not an EC P-256 private key.
 */
export async function importSigningKey(privateJwk: JsonWebKey): Promise<SigningKey> {
  if (
    typeof privateJwk !== "object" || privateJwk === null || privateJwk.kty !== "EC" ||
    privateJwk.crv !== "P-256" ||
    typeof privateJwk.d !== "string" || typeof privateJwk.x !== "string" ||
    typeof privateJwk.y !== "string"
  ) {
    throw new TypeError(
      `importSigningKey: expected an EC P-256 private JWK (kty "EC", crv "P-256", d, x, y)`,
    );
  }
  const { kty, crv, x, y, d } = privateJwk;
  let privateKey: CryptoKey;
  let publicKey: CryptoKey;
  try {
    privateKey = await crypto.subtle.importKey("jwk", { kty, crv, x, y, d }, ALGORITHM, false, [
      "sign",
    ]);
    publicKey = await crypto.subtle.importKey("jwk", { kty, crv, x, y }, ALGORITHM, true, [
      "verify",
    ]);
  } catch (e) {
    throw new TypeError(`importSigningKey: the JWK is not a valid P-256 key`, { cause: e });
  }
  // Some runtimes import d without checking it against x and y: prove the halves belong together.
  const probe = utf8.encode("keel signing key check") as Uint8Array<ArrayBuffer>;
  const proved = await crypto.subtle.sign(SIGN, privateKey, probe)
    .then((sig) => crypto.subtle.verify(SIGN, publicKey, sig, probe))
    .catch(() => false);
  if (!proved) {
    throw new TypeError(
      `importSigningKey: the JWK's private key "d" does not match its public key "x", "y"`,
    );
  }
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", publicKey));
  const point = new Uint8Array(await crypto.subtle.exportKey("raw", publicKey));
  return { keyid: await sshKeyId(point), publicKey: toBase64(spki), privateKey };
}

/**
 * The npm keyid of a public key given as base64 SPKI DER (a keys document's `key`).
 * @throws {TypeError} When `publicKey` is not a P-256 SPKI key.
 */
export async function keyIdOf(publicKey: string): Promise<string> {
  const key = await importPublicKey(publicKey);
  if (key === undefined) throw new TypeError(`keyIdOf: not a base64 P-256 SPKI public key`);
  return await sshKeyId(new Uint8Array(await crypto.subtle.exportKey("raw", key)));
}

/** SHA256 over the SSH wire encoding: string "ecdsa-sha2-nistp256", string "nistp256", string Q. */
async function sshKeyId(point: Uint8Array): Promise<string> {
  const parts = [utf8.encode(KEY_TYPE), utf8.encode("nistp256"), point];
  const wire = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
  let at = 0;
  for (const part of parts) {
    new DataView(wire.buffer).setUint32(at, part.length);
    wire.set(part, at + 4);
    at += 4 + part.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", wire));
  return `SHA256:${toBase64(digest).replace(/=+$/, "")}`;
}

/** The message a registry signs for a version. */
function message(name: string, version: string, integrity: string): Uint8Array<ArrayBuffer> {
  return utf8.encode(`${name}@${version}:${integrity}`) as Uint8Array<ArrayBuffer>;
}

/** Signs `${name}@${version}:${integrity}`; the result goes into the version's `dist.signatures`. */
export async function signVersion(
  key: SigningKey,
  name: string,
  version: string,
  integrity: string,
): Promise<VersionSignature> {
  const raw = new Uint8Array(
    await crypto.subtle.sign(SIGN, key.privateKey, message(name, version, integrity)),
  );
  return { keyid: key.keyid, sig: toBase64(rawToDer(raw)) };
}

/**
 * True when `signature` is a valid signature of `${name}@${version}:${integrity}` by the key in
 * `publicKeys` whose keyid it names. False (never a throw) for an unknown keyid, a malformed
 * key or signature, or a signature that does not verify.
 */
export async function verifyVersionSignature(
  publicKeys: readonly { keyid: string; key: string }[],
  name: string,
  version: string,
  integrity: string,
  signature: { keyid: string; sig: string },
): Promise<boolean> {
  const entry = publicKeys.find((k) => k.keyid === signature.keyid);
  if (entry === undefined) return false;
  const der = fromBase64(signature.sig);
  const raw = der === undefined ? undefined : derToRaw(der);
  if (raw === undefined) return false;
  const key = await importPublicKey(entry.key);
  if (key === undefined) return false;
  try {
    return await crypto.subtle.verify(SIGN, key, raw, message(name, version, integrity));
  } catch {
    return false;
  }
}

async function importPublicKey(base64Spki: string): Promise<CryptoKey | undefined> {
  const spki = fromBase64(base64Spki);
  if (spki === undefined) return undefined;
  try {
    return await crypto.subtle.importKey("spki", spki, ALGORITHM, true, ["verify"]);
  } catch {
    return undefined;
  }
}

/** The `/-/npm/v1/keys` document for `keys` (none expire). */
export function keysDocument(keys: readonly SigningKey[]): { keys: PublishedKey[] } {
  return {
    keys: keys.map((k) => ({
      expires: null,
      keyid: k.keyid,
      keytype: KEY_TYPE,
      scheme: KEY_TYPE,
      key: k.publicKey,
    })),
  };
}

/**
 * Raw r||s (64 bytes) to DER: SEQUENCE { INTEGER r, INTEGER s }, each integer minimal and
 * positive (leading zeros dropped, a 0x00 added when the top bit is set).
 */
export function rawToDer(raw: Uint8Array): Uint8Array {
  if (raw.length !== 2 * SIZE) {
    throw new RangeError(`rawToDer: expected ${2 * SIZE} bytes, got ${raw.length}`);
  }
  const integer = (bytes: Uint8Array): number[] => {
    let start = 0;
    while (start < bytes.length - 1 && bytes[start] === 0) start++;
    const body = Array.from(bytes.subarray(start));
    if (body[0]! >= 0x80) body.unshift(0);
    return [0x02, body.length, ...body];
  };
  const content = [...integer(raw.subarray(0, SIZE)), ...integer(raw.subarray(SIZE))];
  // At most 2 * (2 + 33) = 70 bytes, so every length fits the one-byte short form.
  return new Uint8Array([0x30, content.length, ...content]);
}

/**
 * DER to raw r||s (64 bytes), or undefined when `der` is not a strict DER encoding of two
 * positive integers below 2^256 (non-minimal forms, trailing bytes and long-form lengths are
 * refused, as OpenSSL does).
 */
export function derToRaw(der: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2) return undefined;
  const out = new Uint8Array(2 * SIZE);
  let at = 2;
  for (let i = 0; i < 2; i++) {
    if (der[at] !== 0x02) return undefined;
    const length = der[at + 1]!;
    const body = der.subarray(at + 2, at + 2 + length);
    if (length === 0 || length > SIZE + 1 || body.length !== length) return undefined;
    if (body[0]! >= 0x80) return undefined; // negative
    if (length > 1 && body[0] === 0 && body[1]! < 0x80) return undefined; // non-minimal
    const value = body[0] === 0 && length > 1 ? body.subarray(1) : body;
    if (value.length > SIZE) return undefined;
    out.set(value, i * SIZE + SIZE - value.length);
    at += 2 + length;
  }
  return at === der.length ? out : undefined;
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) {
    return undefined;
  }
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}
