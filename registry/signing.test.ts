import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, createSign, createVerify, generateKeyPairSync } from "node:crypto";
import {
  derToRaw,
  generateSigningKey,
  importSigningKey,
  keyIdOf,
  keysDocument,
  rawToDer,
  signVersion,
  verifyVersionSignature,
} from "./signing.ts";

const INTEGRITY =
  "sha512-dBdNAZFbOrHjT+Wun2FSLb9lcYM+iKr1aUg5D1u6561Mvt6OoI3hM6a+tfB/0Zybud/Qf4NrXkXomlJL4Bv/ng==";

/** The PEM npm builds from a keys document's `key` (pacote: one line between the markers). */
function pemOf(base64Spki: string): string {
  return `-----BEGIN PUBLIC KEY-----\n${base64Spki}\n-----END PUBLIC KEY-----`;
}

const { key, privateJwk } = await generateSigningKey();
const published = keysDocument([key]).keys;

/**
 * npm's own registry key (expired 2025-01-29) as https://registry.npmjs.org/-/npm/v1/keys lists
 * it, and a signature it made for venv@0.1.0, as that version's `dist.signatures` holds it.
 */
const NPM_KEY = {
  keyid: "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA",
  key:
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1Olb3zMAFFxXKHiIkQO5cJ3Yhl5i6UPp+IhuteBJbuHcA5UogKo0EWtlWwW6KSaKoTNEYL7JlCQiVnkhBktUgg==",
};
const NPM_KEY_2 = {
  keyid: "SHA256:DhQ8wR5APBvFHLF/+Tc+AYvPOdTpcIDqOhxsBHRwC7U",
  key:
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEY6Ya7W++7aUPzvMTrezH6Ycx3c+HOKYCcNGybJZSCJq/fd7Qa8uuAKtdIkUQtQiEKERhAmE5lMMJhP8OkDOa2g==",
};
const VENV = {
  integrity:
    "sha512-RMdeiD0OJC+S2w4931iqdi5MB9xe2T/lXZbRrHxbsmQrSA+FwhPk2bIqIwbNDCmThPgNw841Q272O6EFSYhBjQ==",
  signature: {
    keyid: "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA",
    sig:
      "MEUCICKQJCEvvV3HdhCSj3TwH9qqIWLwc0GR1m/NED/s1bPIAiEAvkTmhIDIrD4MZoI2g27+HsuxoFJhC/evORT6T2UUwSc=",
  },
};

describe("signVersion and verifyVersionSignature", () => {
  test("a signature verifies with the published key", async () => {
    const signature = await signVersion(key, "@keel/x", "1.2.3", INTEGRITY);
    assert.equal(signature.keyid, key.keyid);
    assert.equal(
      await verifyVersionSignature(published, "@keel/x", "1.2.3", INTEGRITY, signature),
      true,
    );
  });

  test("a different name, version, integrity or key does not verify", async () => {
    const signature = await signVersion(key, "@keel/x", "1.2.3", INTEGRITY);
    const other = await generateSigningKey();
    const otherIntegrity = INTEGRITY.replace("dBdN", "dBdM");
    assert.equal(
      await verifyVersionSignature(published, "@keel/y", "1.2.3", INTEGRITY, signature),
      false,
    );
    assert.equal(
      await verifyVersionSignature(published, "@keel/x", "1.2.4", INTEGRITY, signature),
      false,
    );
    assert.equal(
      await verifyVersionSignature(published, "@keel/x", "1.2.3", otherIntegrity, signature),
      false,
    );
    // The @ and : separators matter: "a@1.0.0:x" is not "a@1.0.0" + ":x" moved around.
    assert.equal(
      await verifyVersionSignature(published, "@keel/x@1.2.3", "", INTEGRITY, signature),
      false,
    );
    // Another key under the same keyid, and the right key under another keyid.
    const swapped = [{ keyid: key.keyid, key: other.key.publicKey }];
    assert.equal(
      await verifyVersionSignature(swapped, "@keel/x", "1.2.3", INTEGRITY, signature),
      false,
    );
    const renamed = { ...signature, keyid: other.key.keyid };
    assert.equal(
      await verifyVersionSignature(published, "@keel/x", "1.2.3", INTEGRITY, renamed),
      false,
    );
    assert.equal(await verifyVersionSignature([], "@keel/x", "1.2.3", INTEGRITY, signature), false);
  });

  test("a malformed signature or key is false, not a throw", async () => {
    const signature = await signVersion(key, "a", "1.0.0", INTEGRITY);
    const der = Uint8Array.from(atob(signature.sig), (c) => c.charCodeAt(0));
    const flipped = der.slice();
    flipped[der.length - 1]! ^= 0x01;
    const cases = [
      "",
      "not base64!",
      "AAAA",
      btoa(String.fromCharCode(...flipped)),
      btoa(String.fromCharCode(...der, 0)),
    ];
    for (const sig of cases) {
      assert.equal(
        await verifyVersionSignature(published, "a", "1.0.0", INTEGRITY, { keyid: key.keyid, sig }),
        false,
        sig,
      );
    }
    const badKeys = [{ keyid: key.keyid, key: "bm90IGEga2V5" }, { keyid: key.keyid, key: "%%%" }];
    for (const bad of badKeys) {
      assert.equal(await verifyVersionSignature([bad], "a", "1.0.0", INTEGRITY, signature), false);
    }
  });

  test("every signature is fresh DER, and each verifies", async () => {
    for (let i = 0; i < 40; i++) {
      const signature = await signVersion(key, "p", `0.0.${i}`, INTEGRITY);
      const der = Uint8Array.from(atob(signature.sig), (c) => c.charCodeAt(0));
      assert.equal(der[0], 0x30);
      assert.ok(der.length >= 8 && der.length <= 72, `${der.length} bytes`);
      assert.equal(
        await verifyVersionSignature(published, "p", `0.0.${i}`, INTEGRITY, signature),
        true,
      );
    }
  });
});

describe("compatibility with node:crypto and npm", () => {
  test("node:crypto verifies our signatures with the PEM npm builds from the keys document", async () => {
    for (let i = 0; i < 20; i++) {
      const signature = await signVersion(key, "@keel/x", `1.0.${i}`, INTEGRITY);
      const verifier = createVerify("SHA256");
      verifier.write(`@keel/x@1.0.${i}:${INTEGRITY}`);
      verifier.end();
      assert.equal(verifier.verify(pemOf(published[0]!.key), signature.sig, "base64"), true);
    }
  });

  test("our verifier accepts signatures node:crypto makes", async () => {
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const spki = publicKey.export({ type: "spki", format: "der" }).toString("base64");
    const keyid = await keyIdOf(spki);
    for (let i = 0; i < 20; i++) {
      const signer = createSign("SHA256");
      signer.update(`n@1.0.${i}:${INTEGRITY}`);
      const sig = signer.sign(privateKey).toString("base64");
      assert.equal(
        await verifyVersionSignature([{ keyid, key: spki }], "n", `1.0.${i}`, INTEGRITY, {
          keyid,
          sig,
        }),
        true,
      );
      assert.equal(
        await verifyVersionSignature([{ keyid, key: spki }], "n", `1.0.${i + 1}`, INTEGRITY, {
          keyid,
          sig,
        }),
        false,
      );
    }
  });

  test("a real npm registry signature verifies, and fails when changed", async () => {
    assert.equal(
      await verifyVersionSignature([NPM_KEY], "venv", "0.1.0", VENV.integrity, VENV.signature),
      true,
    );
    assert.equal(
      await verifyVersionSignature([NPM_KEY], "venv", "0.1.1", VENV.integrity, VENV.signature),
      false,
    );
    assert.equal(
      await verifyVersionSignature([NPM_KEY_2], "venv", "0.1.0", VENV.integrity, VENV.signature),
      false,
    );
  });

  test("keyIdOf reproduces the keyids of npm's published keys", async () => {
    assert.equal(await keyIdOf(NPM_KEY.key), NPM_KEY.keyid);
    assert.equal(await keyIdOf(NPM_KEY_2.key), NPM_KEY_2.keyid);
    assert.equal(await keyIdOf(key.publicKey), key.keyid);
    await assert.rejects(keyIdOf("bm90IGEga2V5"), TypeError);
  });

  test("the published key is the SPKI DER of the signing key", () => {
    const exported = createPublicKey(pemOf(key.publicKey)).export({ type: "spki", format: "der" })
      .toString("base64");
    assert.equal(exported, key.publicKey);
    const jwk = createPublicKey(pemOf(key.publicKey)).export({ format: "jwk" });
    assert.equal(jwk.x, privateJwk.x);
    assert.equal(jwk.y, privateJwk.y);
  });
});

describe("keys", () => {
  test("the keys document has npm's shape", () => {
    assert.deepEqual(keysDocument([key]), {
      keys: [{
        expires: null,
        keyid: key.keyid,
        keytype: "ecdsa-sha2-nistp256",
        scheme: "ecdsa-sha2-nistp256",
        key: key.publicKey,
      }],
    });
    assert.match(key.keyid, /^SHA256:[A-Za-z0-9+/]{43}$/);
    assert.deepEqual(keysDocument([]), { keys: [] });
  });

  test("importSigningKey restores the key from its JWK", async () => {
    const again = await importSigningKey(privateJwk);
    assert.equal(again.keyid, key.keyid);
    assert.equal(again.publicKey, key.publicKey);
    const signature = await signVersion(again, "r", "1.0.0", INTEGRITY);
    assert.equal(await verifyVersionSignature(published, "r", "1.0.0", INTEGRITY, signature), true);
    assert.equal(again.privateKey.extractable, false);
  });

  test("importSigningKey refuses what is not a P-256 private JWK", async () => {
    const { d: _d, ...publicOnly } = privateJwk;
    const other = await generateSigningKey();
    const bad: JsonWebKey[] = [
      { ...privateJwk, d: other.privateJwk.d! },
      publicOnly,
      { ...privateJwk, crv: "P-384" },
      { ...privateJwk, kty: "RSA" },
      { ...privateJwk, d: "AAAA" },
      { ...privateJwk, x: privateJwk.y! },
    ];
    for (const jwk of bad) {
      await assert.rejects(importSigningKey(jwk), TypeError, JSON.stringify({ ...jwk, d: "…" }));
    }
  });

  test("two generated keys differ", async () => {
    const other = await generateSigningKey();
    assert.notEqual(other.key.keyid, key.keyid);
    assert.notEqual(other.key.publicKey, key.publicKey);
  });
});

describe("DER conversion", () => {
  const hex = (text: string) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
  const raw = (r: string, s: string) => hex(r.padStart(64, "0") + s.padStart(64, "0"));

  test("encodes minimal positive integers", () => {
    // Top bit set: a 0x00 is added.
    assert.deepEqual(
      rawToDer(raw("80".padEnd(64, "0"), "01")),
      hex(`3026022100${"80".padEnd(64, "0")}020101`),
    );
    // Leading zeros are dropped; zero stays one byte.
    assert.deepEqual(rawToDer(raw("00007f", "00")), hex("300602017f020100"));
    assert.deepEqual(
      rawToDer(raw("ff".repeat(32), "ff".repeat(32))),
      hex(`3046022100${"ff".repeat(32)}022100${"ff".repeat(32)}`),
    );
    assert.throws(() => rawToDer(new Uint8Array(63)), RangeError);
  });

  test("decodes what it encodes, for random and edge values", () => {
    const values = [raw("01", "01"), raw("ff".repeat(32), "00"), raw("80", "7f".padEnd(64, "f"))];
    for (let i = 0; i < 200; i++) values.push(crypto.getRandomValues(new Uint8Array(64)));
    for (const value of values) assert.deepEqual(derToRaw(rawToDer(value)), value);
  });

  test("refuses DER that is not strict", () => {
    const bad = [
      "", // empty
      "3007020101020101ff", // a byte after the second integer
      "3007020101020101", // outer length too long
      "3106020101020101", // not a SEQUENCE
      "3006030101020101", // not an INTEGER
      "3006020101020201", // the second integer cut short
      "300702020001020101", // non-minimal: 0x00 before a byte below 0x80
      "3006020181020101", // negative
      "3006020002020101", // zero-length integer
      `30280223${"01".repeat(35)}020101`, // an integer longer than 33 bytes
      "30810602010102010100", // long-form length
    ];
    for (const text of bad) assert.equal(derToRaw(hex(text)), undefined, text);
  });
});
