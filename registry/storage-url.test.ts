import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../core/errors.ts";
import { describeDb, describeStorage, maskUrl, parseDbOption, parseStorageOption } from "./storage-url.ts";

function envOf(vars: Record<string, string>): { get(name: string): string | undefined } {
  return { get: (name) => vars[name] };
}
const CREDENTIALS = envOf({ AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI" });

function storageError(pattern: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(KeelError.is(e, "E_REGISTRY_STORAGE"), `expected E_REGISTRY_STORAGE, got ${String(e)}`);
    assert.match((e as Error).message, pattern);
    return true;
  };
}

describe("parseStorageOption", () => {
  test("a path or a file URL is a folder", () => {
    assert.deepEqual(parseStorageOption("./tarballs", CREDENTIALS), { kind: "folder", dir: "./tarballs" });
    assert.deepEqual(parseStorageOption("/srv/reg/tarballs", envOf({})), { kind: "folder", dir: "/srv/reg/tarballs" });
    assert.deepEqual(parseStorageOption("file:///srv/my%20reg/tarballs", envOf({})), { kind: "folder", dir: "/srv/my reg/tarballs" });
    assert.throws(() => parseStorageOption("file://otherhost/x", envOf({})), storageError(/not a local file URL: use file:\/\/\/absolute\/path/));
  });

  test("an s3 URL gives bucket, prefix, endpoint and region, with credentials from the environment", () => {
    const spec = parseStorageOption(
      "s3://keel-registry/prod/tarballs/?endpoint=http://127.0.0.1:9000&region=eu-west-1&forcePathStyle=false",
      envOf({ AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI", AWS_SESSION_TOKEN: "tok" }),
    );
    assert.deepEqual(spec, {
      kind: "s3",
      s3: {
        endpoint: "http://127.0.0.1:9000",
        bucket: "keel-registry",
        accessKeyId: "AKIDEXAMPLE",
        secretAccessKey: "wJalrXUtnFEMI",
        sessionToken: "tok",
        region: "eu-west-1",
        prefix: "prod/tarballs",
        forcePathStyle: false,
      },
    });
    assert.equal(describeStorage(spec), 'S3 bucket "keel-registry" prefix "prod/tarballs" at http://127.0.0.1:9000 (eu-west-1)');
    assert.doesNotMatch(describeStorage(spec), /AKIDEXAMPLE|wJalrXUtnFEMI|tok/);
  });

  test("without an endpoint, AWS's endpoint for the region", () => {
    const spec = parseStorageOption("s3://bucket-a?region=us-west-2", CREDENTIALS);
    assert.equal(spec.kind === "s3" ? spec.s3.endpoint : "", "https://s3.us-west-2.amazonaws.com");
    const plain = parseStorageOption("s3://bucket-a", CREDENTIALS);
    assert.equal(plain.kind === "s3" ? plain.s3.endpoint : "", "https://s3.us-east-1.amazonaws.com");
    assert.equal(plain.kind === "s3" ? plain.s3.prefix : "x", undefined);
  });

  test("missing credentials name the variables to set", () => {
    assert.throws(
      () => parseStorageOption("s3://bucket-a?endpoint=http://127.0.0.1:9000", envOf({})),
      storageError(/^S3 storage needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \(and AWS_SESSION_TOKEN/),
    );
    assert.throws(
      () => parseStorageOption("s3://bucket-a", envOf({ AWS_ACCESS_KEY_ID: "AKID" })),
      storageError(/set AWS_SECRET_ACCESS_KEY \(/),
    );
  });

  test("secrets in the URL are refused, and never echoed", () => {
    for (const value of ["s3://AKIDEXAMPLE:wJalrXUtnFEMI@bucket-a/prefix", "s3://bucket-a/p?endpoint=http://h:9000&secretAccessKey=wJalrXUtnFEMI"]) {
      assert.throws(() => parseStorageOption(value, CREDENTIALS), (e: unknown) => {
        storageError(/never put secrets in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/)(e);
        assert.doesNotMatch((e as Error).message, /wJalrXUtnFEMI/);
        return true;
      });
    }
  });

  test("anything else lists the accepted forms", () => {
    for (const value of ["ftp://host/x", "gs://bucket/x", "http://127.0.0.1:9000/bucket"]) {
      assert.throws(() => parseStorageOption(value, CREDENTIALS), storageError(/does not take "[a-z]+:" URLs: use a folder path .*file:\/\/\/.*s3:\/\/BUCKET\/PREFIX\?endpoint=/));
    }
    assert.throws(() => parseStorageOption("", CREDENTIALS), storageError(/--storage is empty/));
    assert.throws(() => parseStorageOption("s3://bucket-a?endpont=http://x", CREDENTIALS), storageError(/takes only the parameters "endpoint", "region", "forcePathStyle"; got "endpont"/));
    assert.throws(() => parseStorageOption("s3://Bad_Bucket", CREDENTIALS), storageError(/S3 bucket name "Bad_Bucket" is invalid/));
    assert.throws(() => parseStorageOption("s3://bucket-a?endpoint=ftp://x", CREDENTIALS), storageError(/must be an http\(s\) URL/));
    assert.throws(() => parseStorageOption("s3://bucket-a?forcePathStyle=maybe", CREDENTIALS), storageError(/forcePathStyle takes "true" or "false"/));
  });
});

describe("parseDbOption", () => {
  test("a path or file URL is SQLite; a postgres URL is Postgres, with ?schema= taken out", () => {
    assert.deepEqual(parseDbOption("./registry.db"), { kind: "sqlite", path: "./registry.db" });
    assert.deepEqual(parseDbOption("file:///var/keel/registry.db"), { kind: "sqlite", path: "/var/keel/registry.db" });
    assert.deepEqual(parseDbOption("postgres://u:p@127.0.0.1:5432/test"), { kind: "postgres", url: "postgres://u:p@127.0.0.1:5432/test" });
    assert.deepEqual(parseDbOption("postgresql://u@db.internal/reg?schema=keel_reg&sslmode=require"), {
      kind: "postgres",
      url: "postgresql://u@db.internal/reg?sslmode=require",
      schema: "keel_reg",
    });
  });

  test("other URLs and bad schemas are E_REGISTRY_STORAGE", () => {
    assert.throws(() => parseDbOption("mysql://root@127.0.0.1/keel"), storageError(/--db does not take "mysql:" URLs: use a SQLite file path .*postgres:\/\//));
    assert.throws(() => parseDbOption("postgres://u@h/db?schema=a;drop"), storageError(/schema "a;drop" is not a plain SQL name/));
    assert.throws(() => parseDbOption(""), storageError(/--db is empty/));
  });

  test("descriptions mask the password", () => {
    assert.equal(describeDb(parseDbOption("postgres://keel:hunter2@127.0.0.1:5432/test?schema=s1")), 'Postgres postgres://keel:***@127.0.0.1:5432/test schema "s1"');
    assert.equal(describeDb({ kind: "sqlite", path: "/x/registry.db" }), "SQLite /x/registry.db");
  });
});

describe("maskUrl", () => {
  test("hides passwords and secret-looking parameters, and leaves the rest as given", () => {
    assert.equal(maskUrl("postgres://keel:hunter2@h:5432/db"), "postgres://keel:***@h:5432/db");
    assert.equal(maskUrl("postgres://h/db?user=keel&password=hunter2"), "postgres://h/db?user=keel&password=***");
    assert.equal(maskUrl("s3://b/p?endpoint=http://127.0.0.1:9000"), "s3://b/p?endpoint=http://127.0.0.1:9000");
    assert.equal(maskUrl("not a url://u:pw@x"), "not a url://u:***@x");
  });
});
