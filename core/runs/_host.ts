/**
 * Who owns a run record (this process's id and host name), and whether an owner is still alive,
 * found through the Runtime port: `/proc` where it can be read (Linux; Deno allows it only with
 * every permission), else `sh` (its `$PPID` is this process) and `kill -0`.
 * @module
 */

import type { Runtime } from "../runtime.ts";

/** The process that writes a record. */
export interface ProcessIdentity {
  /** Undefined when it cannot be found (no /proc and no processes). */
  readonly pid: number | undefined;
  /** The process's start time in clock ticks since boot (Linux), which tells a reused pid apart. */
  readonly pidStart: string | undefined;
  readonly host: string;
}

const identities = new WeakMap<Runtime, Promise<ProcessIdentity>>();
const procReadable = new WeakMap<Runtime, Promise<boolean>>();

/** `/proc/<pid>/stat` -> [state, starttime]; undefined when it cannot be read. */
async function procStat(runtime: Runtime, pid: number): Promise<[string, string] | undefined> {
  try {
    const text = await runtime.fs!.readTextFile(`/proc/${pid}/stat`);
    // The command name (field 2) may hold spaces and parentheses; the rest follows the last ")".
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return [rest[0] ?? "", rest[19] ?? ""];
  } catch {
    return undefined;
  }
}

/** Whether this process may read `/proc` (false off Linux, and on Deno without every permission). */
function canReadProc(runtime: Runtime): Promise<boolean> {
  let found = procReadable.get(runtime);
  if (found === undefined) {
    found = runtime.fs
      ? runtime.fs.readTextFile("/proc/self/stat").then(() => true, () => false)
      : Promise.resolve(false);
    procReadable.set(runtime, found);
  }
  return found;
}

async function hostName(runtime: Runtime): Promise<string> {
  for (const file of ["/etc/hostname", "/proc/sys/kernel/hostname"]) {
    try {
      const name = (await runtime.fs!.readTextFile(file)).trim();
      if (name !== "") return name;
    } catch {
      // try the next source
    }
  }
  return runtime.env.get("HOSTNAME") ?? runtime.env.get("COMPUTERNAME") ?? "localhost";
}

async function findIdentity(runtime: Runtime): Promise<ProcessIdentity> {
  const host = runtime.fs ? await hostName(runtime) : "unknown";
  // A runtime that knows its pid says so; nothing to start then.
  const own = runtime.pid;
  if (typeof own === "number" && Number.isInteger(own) && own > 0) {
    return {
      pid: own,
      pidStart: (await canReadProc(runtime)) ? (await procStat(runtime, own))?.[1] : undefined,
      host,
    };
  }
  if (runtime.fs && (await canReadProc(runtime))) {
    try {
      const self = await runtime.fs.realPath("/proc/self");
      const pid = Number(self.slice(self.lastIndexOf("/") + 1));
      if (Number.isInteger(pid) && pid > 0) {
        return { pid, pidStart: (await procStat(runtime, pid))?.[1], host };
      }
    } catch {
      // fall back to a shell below
    }
  }
  if (runtime.processes) {
    try {
      const out = await runtime.processes.run("sh", { args: ["-c", "echo $PPID"], stdin: "null" });
      const pid = Number(out.stdout.trim());
      if (out.success && Number.isInteger(pid) && pid > 0) {
        return { pid, pidStart: undefined, host };
      }
    } catch {
      // no shell either
    }
  }
  return { pid: undefined, pidStart: undefined, host };
}

/** This process's identity, looked up once per runtime (start it early; it may spawn `sh`). */
export function processIdentity(runtime: Runtime): Promise<ProcessIdentity> {
  let found = identities.get(runtime);
  if (found === undefined) {
    found = findIdentity(runtime);
    identities.set(runtime, found);
  }
  return found;
}

/**
 * Whether the process that wrote a record is still running: true, false, or undefined when this
 * host cannot tell (another host, or no pid was recorded).
 */
export async function ownerAlive(
  runtime: Runtime,
  owner: { pid?: number | undefined; pidStart?: string | undefined; host?: string | undefined },
): Promise<boolean | undefined> {
  const me = await processIdentity(runtime);
  if (owner.pid === undefined || owner.host === undefined || owner.host !== me.host) {
    return undefined;
  }
  if (owner.pid === me.pid) return true;
  if (await canReadProc(runtime)) {
    const stat = await procStat(runtime, owner.pid);
    if (stat === undefined) return false;
    const [state, start] = stat;
    // A zombie has exited; a different start time means the pid was reused.
    if (state === "Z" || state === "X") return false;
    return owner.pidStart === undefined || owner.pidStart === start;
  }
  if (runtime.processes) {
    try {
      const out = await runtime.processes.run("kill", {
        args: ["-0", String(owner.pid)],
        stdin: "null",
      });
      return out.success;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
