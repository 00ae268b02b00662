import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  basename,
  dirname,
  fromFileUrl,
  isAbsolutePath,
  isWithin,
  joinPath,
  normalizePath,
  resolvePath,
  toFileUrl,
} from "./path.ts";

describe("normalizePath", () => {
  test("collapses '.', repeated slashes and trailing slashes", () => {
    assert.equal(normalizePath("/a/./b//c/"), "/a/b/c");
    assert.equal(normalizePath("a//b/./"), "a/b");
    assert.equal(normalizePath("/"), "/");
    assert.equal(normalizePath("//"), "/");
    assert.equal(normalizePath(""), ".");
    assert.equal(normalizePath("./"), ".");
  });

  test("resolves '..' against the segment before it", () => {
    assert.equal(normalizePath("/a/b/../c"), "/a/c");
    assert.equal(normalizePath("a/b/../../c"), "c");
    assert.equal(normalizePath("a/.."), ".");
  });

  test("never climbs above '/' for an absolute path", () => {
    assert.equal(normalizePath("/.."), "/");
    assert.equal(normalizePath("/../../etc/passwd"), "/etc/passwd");
    assert.equal(normalizePath("/data/../../etc"), "/etc");
  });

  test("keeps leading '..' of a relative path", () => {
    assert.equal(normalizePath("../x"), "../x");
    assert.equal(normalizePath("../../x/../y"), "../../y");
    assert.equal(normalizePath("a/../../b"), "../b");
  });
});

describe("isAbsolutePath / joinPath / resolvePath", () => {
  test("isAbsolutePath is true only for paths starting at '/'", () => {
    assert.equal(isAbsolutePath("/a"), true);
    assert.equal(isAbsolutePath("a/b"), false);
    assert.equal(isAbsolutePath("./a"), false);
  });

  test("joinPath joins, skips empty segments and normalizes", () => {
    assert.equal(joinPath("/a", "b", "../c"), "/a/c");
    assert.equal(joinPath("/a/", "", "/b/"), "/a/b");
    assert.equal(joinPath("a", "b"), "a/b");
  });

  test("resolvePath resolves a relative path against the base and keeps an absolute one", () => {
    assert.equal(resolvePath("x/y", "/base"), "/base/x/y");
    assert.equal(resolvePath("./x", "/base/"), "/base/x");
    assert.equal(resolvePath("../x", "/base/dir"), "/base/x");
    assert.equal(resolvePath("/abs/./x", "/base"), "/abs/x");
    assert.equal(resolvePath("../../../x", "/base"), "/x");
  });
});

describe("dirname / basename", () => {
  test("split a path into its parent and last segment", () => {
    assert.equal(dirname("/a/b/c.txt"), "/a/b");
    assert.equal(basename("/a/b/c.txt"), "c.txt");
    assert.equal(dirname("/a"), "/");
    assert.equal(dirname("/"), "/");
    assert.equal(dirname("a"), ".");
    assert.equal(dirname("a/b/"), "a");
    assert.equal(basename("/a/b/"), "b");
    assert.equal(basename("/"), "");
  });
});

describe("isWithin", () => {
  test("is true for the directory itself and paths under it", () => {
    assert.equal(isWithin("/data", "/data"), true);
    assert.equal(isWithin("/data/x/y", "/data"), true);
    assert.equal(isWithin("/anything", "/"), true);
  });

  test("is false for a sibling sharing a prefix, and for the parent", () => {
    assert.equal(isWithin("/database", "/data"), false);
    assert.equal(isWithin("/data-old/x", "/data"), false);
    assert.equal(isWithin("/", "/data"), false);
  });
});

describe("toFileUrl / fromFileUrl", () => {
  test("round-trip paths with spaces, '%', '#' and '?'", () => {
    for (
      const path of ["/tmp/a b/c.txt", "/tmp/100%/x", "/tmp/a#b", "/tmp/what?.txt", "/tmp/ünï"]
    ) {
      const url = toFileUrl(path);
      assert.match(url, /^file:\/\/\//);
      assert.equal(new URL(url).protocol, "file:");
      assert.equal(fromFileUrl(url), path, url);
      assert.equal(fromFileUrl(new URL(url)), path);
    }
  });

  test("toFileUrl normalizes the path and passes URLs through", () => {
    assert.equal(toFileUrl("/a/./b/../c"), "file:///a/c");
    assert.equal(toFileUrl("file:///x/y.ts"), "file:///x/y.ts");
    assert.equal(toFileUrl("https://example.com/m.ts"), "https://example.com/m.ts");
  });

  test("toFileUrl rejects a relative path with a TypeError instead of inventing a host", () => {
    assert.throws(
      () => toFileUrl("models/a.onnx"),
      (e) => e instanceof TypeError && e.message.includes('"models/a.onnx"'),
    );
  });

  test("fromFileUrl rejects a URL that is not file: with a TypeError", () => {
    assert.throws(
      () => fromFileUrl("https://example.com/x"),
      (e) => e instanceof TypeError && /https:\/\/example\.com\/x/.test(e.message),
    );
  });
});
