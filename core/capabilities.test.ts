import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  type Capability,
  CAPABILITY_KINDS,
  capabilityCovers,
  createGrant,
  editDistance,
  formatCapability,
  isFullTrust,
  missingCapabilities,
  netCapabilityFor,
  parseCapability,
} from "./capabilities.ts";
import { KeelError } from "./errors.ts";

function parse(text: string): Capability {
  return parseCapability(text);
}

function assertInvalid(text: string, why?: RegExp, base?: string): void {
  assert.throws(
    () => parseCapability(text, base === undefined ? {} : { base }),
    (e) => {
      assert.ok(KeelError.is(e, "E_CAPABILITY_INVALID"), `${text}: ${String(e)}`);
      assert.ok(e.message.includes(`"${text}"`), `message names the capability: ${e.message}`);
      if (why) assert.match(e.message, why);
      return true;
    },
  );
}

function covers(granted: string, wanted: string): boolean {
  return capabilityCovers(parse(granted), parse(wanted));
}

describe("parseCapability: kinds", () => {
  test("every kind parses without a scope", () => {
    for (const kind of CAPABILITY_KINDS) assert.deepEqual(parse(kind), { kind });
  });

  test("every kind but gpu parses with a scope", () => {
    assert.deepEqual(parse("net:example.com"), { kind: "net", scope: "example.com" });
    assert.deepEqual(parse("read:/data"), { kind: "read", scope: "/data" });
    assert.deepEqual(parse("write:/tmp/out"), { kind: "write", scope: "/tmp/out" });
    assert.deepEqual(parse("env:HOME"), { kind: "env", scope: "HOME" });
    assert.deepEqual(parse("run:python3"), { kind: "run", scope: "python3" });
    assert.deepEqual(parse("run:/usr/bin/git"), { kind: "run", scope: "/usr/bin/git" });
    assert.deepEqual(parse("ffi:/usr/lib/libfoo.so"), { kind: "ffi", scope: "/usr/lib/libfoo.so" });
    assert.deepEqual(parse("sys:hostname"), { kind: "sys", scope: "hostname" });
  });

  test("gpu takes no scope", () => {
    assertInvalid("gpu:x", /"gpu" takes no scope/);
    assertInvalid("gpu:0");
  });

  test("an empty scope after ':' is invalid and says to leave out ':'", () => {
    for (const text of ["net:", "read:", "env:", "run:"]) assertInvalid(text, /leave out ':'/);
  });

  test("a NUL character is invalid", () => {
    assertInvalid("read:/data\0/x", /NUL/);
    assertInvalid("run:ec\0ho", /NUL/);
  });

  test("run and sys scopes may not hold whitespace; run may not hold '..'", () => {
    assertInvalid("run:rm -rf", /whitespace/);
    assertInvalid("sys:host name", /whitespace/);
    assertInvalid("run:../bin/sh", /'\.\.'/);
    assertInvalid("run:/usr/bin/../../bin/sh", /'\.\.'/);
  });

  test("a non-string is E_CAPABILITY_INVALID", () => {
    assert.throws(
      () => parseCapability(42 as unknown as string),
      (e) => KeelError.is(e, "E_CAPABILITY_INVALID") && /string/.test(e.message),
    );
  });
});

describe("parseCapability: unknown kinds", () => {
  function assertUnknown(text: string, hint: string | null): void {
    assert.throws(
      () => parse(text),
      (e) => {
        assert.ok(KeelError.is(e, "E_CAPABILITY_UNKNOWN"), `${text}: ${String(e)}`);
        assert.ok(e.message.includes(`"${text}"`), e.message);
        assert.match(e.message, /use one of net, read, write, env, run, ffi, sys, gpu/);
        if (hint === null) assert.doesNotMatch(e.message, /did you mean/);
        else assert.ok(e.message.includes(`did you mean "${hint}"?`), e.message);
        return true;
      },
    );
  }

  test("suggests the kind an alias or a typo means", () => {
    assertUnknown("fs:/x", "read");
    assertUnknown("nett", "net");
    assertUnknown("nett:example.com", "net");
    assertUnknown("http:example.com", "net");
    assertUnknown("exec:ls", "run");
    assertUnknown("Env:HOME", "env");
    assertUnknown("webgpu", "gpu");
  });

  test("gives no suggestion when nothing is close", () => {
    assertUnknown("camera", null);
    assertUnknown("", null);
  });
});

describe("parseCapability: net", () => {
  test("host and host:port, lower-cased", () => {
    assert.equal(parse("net:api.example.com").scope, "api.example.com");
    assert.equal(parse("net:API.Example.COM:443").scope, "api.example.com:443");
    assert.equal(parse("net:localhost:8080").scope, "localhost:8080");
    assert.equal(parse("net:127.0.0.1:80").scope, "127.0.0.1:80");
    assert.equal(parse("net:example.com:080").scope, "example.com:80");
  });

  test("IPv6 addresses in brackets, with and without a port", () => {
    assert.equal(parse("net:[::1]").scope, "[::1]");
    assert.equal(parse("net:[::1]:8080").scope, "[::1]:8080");
    assert.equal(parse("net:[FE80::1]:443").scope, "[fe80::1]:443");
  });

  test("IPv6 addresses are written the way URLs write them, so grants match requests", () => {
    assert.equal(parse("net:[0:0:0:0:0:0:0:1]:8080").scope, "[::1]:8080");
    const grant = createGrant(["net:[0:0:0:0:0:0:0:1]:8080"]);
    assert.equal(grant.covers(netCapabilityFor(new URL("http://[::1]:8080/x"))), true);
  });

  test("bad ports are invalid", () => {
    for (
      const text of [
        "net:example.com:0",
        "net:example.com:65536",
        "net:example.com:http",
        "net:example.com:",
        "net:example.com:-1",
        "net:[::1]:99999",
      ]
    ) {
      assertInvalid(text, /is not a port \(1-65535\)/);
    }
    assert.equal(parse("net:example.com:65535").scope, "example.com:65535");
    assert.equal(parse("net:example.com:1").scope, "example.com:1");
  });

  test("a URL instead of a host is invalid and says to write the host", () => {
    assertInvalid("net:https://example.com", /not a URL, e\.g\. "net:example\.com:443"/);
    assertInvalid("net:example.com/path", /not a URL/);
  });

  test("bad hosts are invalid", () => {
    for (
      const text of [
        "net:-bad.com",
        "net:bad-.com",
        "net:exa mple.com",
        "net:under_score.com",
        "net:a..b",
        "net:*.example.com",
        "net:example.com.",
        "net:[::1%eth0]",
      ]
    ) {
      assertInvalid(text, /is not a host name or IP address/);
    }
  });

  test("bad IPv6 forms are invalid and say how to write them", () => {
    assertInvalid("net:::1", /in brackets, e\.g\. net:\[::1\]:8080/);
    assertInvalid("net:example.com:443:1", /in brackets/);
    assertInvalid("net:[::1", /closed with '\]'/);
    assertInvalid("net:[::1]8080", /expected ':port'/);
    assertInvalid("net:[not-ipv6]");
    assertInvalid("net:[1:2]");
  });
});

describe("parseCapability: paths", () => {
  test("absolute paths are normalized", () => {
    assert.equal(parse("read:/a/./b//c").scope, "/a/b/c");
    assert.equal(parse("write:/tmp/out/").scope, "/tmp/out");
    assert.equal(parse("ffi:/lib//x.so").scope, "/lib/x.so");
  });

  test("relative paths resolve against base", () => {
    assert.equal(parseCapability("read:data", { base: "/project" }).scope, "/project/data");
    assert.equal(parseCapability("write:./out/x", { base: "/project/" }).scope, "/project/out/x");
    assert.equal(parseCapability("read:/abs", { base: "/project" }).scope, "/abs");
  });

  test("a relative path without base is invalid and says to use an absolute path", () => {
    assertInvalid("read:data", /needs a base directory; use an absolute path/);
    assertInvalid("write:./out", /needs a base directory/);
  });

  test("'..' is rejected, absolute or relative, with or without base", () => {
    assertInvalid("read:/data/../etc", /may not hold '\.\.'/);
    assertInvalid("write:../x", /may not hold '\.\.'/);
    assertInvalid("write:../x", /may not hold '\.\.'/, "/project");
    assertInvalid("read:/data/..", /'\.\.'/);
    assertInvalid("read:..", /'\.\.'/, "/project");
    assertInvalid("ffi:/lib\\..\\etc", /'\.\.'/);
  });

  test("names that merely contain dots are fine", () => {
    assert.equal(parse("read:/data/..hidden/x...y").scope, "/data/..hidden/x...y");
  });
});

describe("parseCapability: env", () => {
  test("names and PREFIX_* wildcards", () => {
    assert.equal(parse("env:HOME").scope, "HOME");
    assert.equal(parse("env:_private1").scope, "_private1");
    assert.equal(parse("env:AWS_*").scope, "AWS_*");
  });

  test("other names are invalid", () => {
    for (const text of ["env:1ABC", "env:A-B", "env:*", "env:A*B", "env:A B", "env:A=B"]) {
      assertInvalid(text, /an env name is letters, digits and _/);
    }
  });
});

describe("capabilityCovers", () => {
  test("a path grant covers itself and what lies under it, not a sibling sharing its prefix", () => {
    assert.equal(covers("read:/data", "read:/data"), true);
    assert.equal(covers("read:/data", "read:/data/x"), true);
    assert.equal(covers("read:/data", "read:/data/x/y.bin"), true);
    assert.equal(covers("read:/data", "read:/database"), false);
    assert.equal(covers("read:/data", "read:/"), false);
    assert.equal(covers("read:/", "read:/etc/passwd"), true);
    assert.equal(covers("write:/tmp/out", "write:/tmp/out/a"), true);
    assert.equal(covers("ffi:/lib", "ffi:/lib/x.so"), true);
  });

  test("a path grant does not cover a path that climbs out of it with '..'", () => {
    const grant = createGrant(["read:/data"]);
    assert.equal(grant.covers({ kind: "read", scope: "/data/../etc/passwd" }), false);
    assert.equal(grant.covers({ kind: "read", scope: "/data/x/../../etc" }), false);
    assert.equal(grant.covers({ kind: "read", scope: "/data/x/../y" }), true);
  });

  test("a scoped grant does not cover the whole kind", () => {
    assert.equal(covers("read:/data", "read"), false);
    assert.equal(covers("net:example.com", "net"), false);
    assert.equal(covers("env:HOME", "env"), false);
  });

  test("a kind without scope covers everything of that kind", () => {
    assert.equal(covers("net", "net:example.com:443"), true);
    assert.equal(covers("net", "net:[::1]:80"), true);
    assert.equal(covers("net", "net"), true);
    assert.equal(covers("read", "read:/etc/passwd"), true);
    assert.equal(covers("env", "env:SECRET"), true);
    assert.equal(covers("run", "run:rm"), true);
    assert.equal(covers("gpu", "gpu"), true);
  });

  test("kinds never cross", () => {
    assert.equal(covers("read:/data", "write:/data/x"), false);
    assert.equal(covers("write:/data", "read:/data/x"), false);
    assert.equal(covers("read", "write:/x"), false);
    assert.equal(covers("net", "env:HOME"), false);
    assert.equal(covers("run", "ffi:/lib/x.so"), false);
    assert.equal(covers("sys", "gpu"), false);
  });

  test("net: a host covers every port; host:port covers only that port", () => {
    assert.equal(covers("net:example.com", "net:example.com:443"), true);
    assert.equal(covers("net:example.com", "net:example.com:80"), true);
    assert.equal(covers("net:example.com", "net:example.com"), true);
    assert.equal(covers("net:example.com:80", "net:example.com:443"), false);
    assert.equal(covers("net:example.com:443", "net:example.com:443"), true);
    assert.equal(covers("net:example.com:443", "net:example.com"), false);
    assert.equal(covers("net:example.com", "net:api.example.com:443"), false);
    assert.equal(covers("net:example.com", "net:example.com.evil.net:443"), false);
    assert.equal(covers("net:localhost", "net:127.0.0.1:80"), false);
    assert.equal(covers("net:[::1]", "net:[::1]:8080"), true);
    assert.equal(covers("net:[::1]:80", "net:[::1]:8080"), false);
  });

  test("env: exact names, or a PREFIX_* wildcard", () => {
    assert.equal(covers("env:HOME", "env:HOME"), true);
    assert.equal(covers("env:HOME", "env:HOMEPATH"), false);
    assert.equal(covers("env:HOME", "env:home"), false);
    assert.equal(covers("env:AWS_*", "env:AWS_SECRET_KEY"), true);
    assert.equal(covers("env:AWS_*", "env:AWS_"), true);
    assert.equal(covers("env:AWS_*", "env:AWSX"), false);
    assert.equal(covers("env:AWS_*", "env:MY_AWS_KEY"), false);
  });

  test("run and sys: exact names", () => {
    assert.equal(covers("run:echo", "run:echo"), true);
    assert.equal(covers("run:echo", "run:/bin/echo"), false);
    assert.equal(covers("run:echo", "run:echoes"), false);
    assert.equal(covers("sys:hostname", "sys:osRelease"), false);
  });
});

describe("createGrant / missingCapabilities", () => {
  test("a grant covers what it lists and nothing else (deny by default)", () => {
    const grant = createGrant(["read:/data", "net:api.example.com:443"]);
    assert.equal(grant.covers(parse("read:/data/mnist.idx")), true);
    assert.equal(grant.covers(parse("read:/etc/passwd")), false);
    assert.equal(grant.covers(parse("net:api.example.com:443")), true);
    assert.equal(grant.covers(parse("net:api.example.com:80")), false);
    assert.equal(createGrant([]).covers(parse("read:/")), false);
    assert.equal(createGrant([]).covers(parse("gpu")), false);
  });

  test("toStrings gives the canonical forms; the grant is frozen", () => {
    const grant = createGrant(["read:/a/./b", "net:Example.com", { kind: "env", scope: "HOME" }]);
    assert.deepEqual(grant.toStrings(), ["read:/a/b", "net:example.com", "env:HOME"]);
    assert.ok(Object.isFrozen(grant));
    assert.ok(Object.isFrozen(grant.capabilities));
  });

  test("relative paths resolve against base", () => {
    assert.deepEqual(createGrant(["read:data"], { base: "/project" }).toStrings(), [
      "read:/project/data",
    ]);
  });

  test("capability objects are checked like strings", () => {
    assert.throws(
      () => createGrant([{ kind: "read", scope: "/data/../etc" }]),
      (e) => KeelError.is(e, "E_CAPABILITY_INVALID"),
    );
    assert.throws(
      () => createGrant([{ kind: "disk" as "read" }]),
      (e) => KeelError.is(e, "E_CAPABILITY_UNKNOWN"),
    );
  });

  test("a bad entry or a non-list fails with a code", () => {
    assert.throws(
      () => createGrant(["read:/ok", "nett"]),
      (e) => KeelError.is(e, "E_CAPABILITY_UNKNOWN"),
    );
    assert.throws(
      () => createGrant("read:/data" as unknown as string[]),
      (e) => KeelError.is(e, "E_CAPABILITY_INVALID") && /list/.test(e.message),
    );
  });

  test("missingCapabilities returns the uncovered ones in order, empty when all are covered", () => {
    const grant = createGrant(["read:/data", "net:example.com"]);
    const requested = ["read:/data/x", "write:/data/x", "net:example.com:443", "env:HOME", "gpu"]
      .map(parse);
    assert.deepEqual(missingCapabilities(requested, grant).map(formatCapability), [
      "write:/data/x",
      "env:HOME",
      "gpu",
    ]);
    assert.deepEqual(missingCapabilities(requested.slice(0, 1), grant), []);
    assert.deepEqual(missingCapabilities([], createGrant([])), []);
  });
});

describe("formatCapability", () => {
  test("is the inverse of parseCapability for canonical strings", () => {
    const canonical = [
      "net",
      "net:example.com",
      "net:example.com:443",
      "net:[::1]:8080",
      "read",
      "read:/data/x",
      "write:/tmp",
      "env:HOME",
      "env:AWS_*",
      "run:echo",
      "ffi:/lib/x.so",
      "sys:hostname",
      "gpu",
    ];
    for (const text of canonical) {
      assert.equal(formatCapability(parse(text)), text);
      assert.deepEqual(parse(formatCapability(parse(text))), parse(text));
    }
  });

  test("writes the normalized form of a non-canonical string", () => {
    assert.equal(formatCapability(parse("read:/a/./b//c")), "read:/a/b/c");
    assert.equal(formatCapability(parse("net:Example.COM:0443")), "net:example.com:443");
  });
});

describe("netCapabilityFor", () => {
  test("uses the URL's port, or the scheme's default", () => {
    assert.equal(
      formatCapability(netCapabilityFor(new URL("http://example.com/x"))),
      "net:example.com:80",
    );
    assert.equal(
      formatCapability(netCapabilityFor(new URL("https://example.com/x"))),
      "net:example.com:443",
    );
    assert.equal(
      formatCapability(netCapabilityFor(new URL("ws://example.com/"))),
      "net:example.com:80",
    );
    assert.equal(
      formatCapability(netCapabilityFor(new URL("wss://example.com/"))),
      "net:example.com:443",
    );
    assert.equal(
      formatCapability(netCapabilityFor(new URL("http://Example.COM:8080/"))),
      "net:example.com:8080",
    );
    assert.equal(
      formatCapability(netCapabilityFor(new URL("http://127.0.0.1:3000/"))),
      "net:127.0.0.1:3000",
    );
    assert.equal(
      formatCapability(netCapabilityFor(new URL("http://[::1]:3000/"))),
      "net:[::1]:3000",
    );
  });

  test("an explicit default port is the same as none", () => {
    assert.equal(
      formatCapability(netCapabilityFor(new URL("https://example.com:443/"))),
      "net:example.com:443",
    );
  });

  test("what it returns is what a grant covers", () => {
    const grant = createGrant(["net:example.com:443"]);
    assert.equal(grant.covers(netCapabilityFor(new URL("https://example.com/a"))), true);
    assert.equal(grant.covers(netCapabilityFor(new URL("http://example.com/a"))), false);
  });
});

describe("isFullTrust / editDistance", () => {
  test("run, ffi and gpu are full trust; the rest are not", () => {
    assert.deepEqual(
      CAPABILITY_KINDS.filter((kind) => isFullTrust({ kind })),
      ["run", "ffi", "gpu"],
    );
    assert.equal(isFullTrust(parse("run:echo")), true);
    assert.equal(isFullTrust(parse("net:example.com")), false);
  });

  test("editDistance counts single-character edits", () => {
    assert.equal(editDistance("net", "net"), 0);
    assert.equal(editDistance("net", "nett"), 1);
    assert.equal(editDistance("read", "raed"), 2);
    assert.equal(editDistance("", "gpu"), 3);
    assert.equal(editDistance("kitten", "sitting"), 3);
  });
});
