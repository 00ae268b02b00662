/**
 * Checks a workflow's graph and protocols before anything runs, reporting every problem at once.
 * @module
 */

import { editDistance } from "../edit-distance.ts";
import { KeelError } from "../errors.ts";
import type { TaskDefinition, WorkflowDefinition } from "./definition.ts";
import { findReferenceTexts, looksLikeTaskReference, parseReference, referenceHead } from "./substitute.ts";

/** What a protocol offers, for validation. */
export interface ProtocolInfo {
  /** Full method names ("python/execute"); an entry ending in `*` accepts any method with that prefix. */
  readonly methods: readonly string[];
}

/** Options for {@link validateWorkflow}. */
export interface ValidateWorkflowOptions {
  /** What each protocol offers; undefined for a protocol nothing provides. Unset: protocols are not checked. */
  readonly protocols?: (protocol: string) => ProtocolInfo | undefined;
}

/** Whether `method` is among `methods` (entries ending in `*` are prefixes). */
export function methodAccepted(methods: readonly string[], method: string): boolean {
  return methods.some((m) => (m.endsWith("*") ? method.startsWith(m.slice(0, -1)) : m === method));
}

function suggest(name: string, candidates: Iterable<string>): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean "${best}"?)` : "";
}

/**
 * Every problem of a workflow, each a coded KeelError: `E_WORKFLOW_DUPLICATE_ID`,
 * `E_WORKFLOW_UNKNOWN_DEPENDENCY` (with a suggestion), `E_WORKFLOW_CYCLE` (with the path),
 * `E_WORKFLOW_UNKNOWN_PROTOCOL` ("no provider for llm/v1"), `E_WORKFLOW_UNKNOWN_METHOD`,
 * `E_WORKFLOW_BAD_REFERENCE` (a `${x.path}` whose task is not a dependency, direct or transitive),
 * and `E_WORKFLOW_INVALID` (a task with no method or protocol). Empty when the workflow is valid.
 *
 * @example
 * ```ts
 * import { validateWorkflow } from "./validate.ts";
 * const problems = validateWorkflow({
 *   name: "w",
 *   tasks: [{ id: "a", protocol: "x/v1", method: "x/run", params: {}, dependencies: ["b"], priority: 2, continueOnError: false }],
 * });
 * console.assert(problems[0]?.code === "E_WORKFLOW_UNKNOWN_DEPENDENCY");
 * ```
 */
export function validateWorkflow(def: WorkflowDefinition, options: ValidateWorkflowOptions = {}): KeelError[] {
  const problems: KeelError[] = [];
  const byId = new Map<string, TaskDefinition>();
  for (const t of def.tasks) {
    if (byId.has(t.id)) {
      problems.push(new KeelError("E_WORKFLOW_DUPLICATE_ID", `Two tasks have the id "${t.id}": give each task its own id`, { details: { task: t.id } }));
    } else byId.set(t.id, t);
  }
  const ids = new Set(byId.keys());

  for (const t of def.tasks) {
    for (const d of t.dependencies) {
      if (!ids.has(d)) {
        problems.push(new KeelError("E_WORKFLOW_UNKNOWN_DEPENDENCY", `Task "${t.id}" depends on "${d}", which is not a task of this workflow${suggest(d, ids)}`, {
          details: { task: t.id, dependency: d },
        }));
      }
    }
    if (t.method === "") {
      problems.push(new KeelError("E_WORKFLOW_INVALID", `Task "${t.id}" has no method: add one, such as "python/execute"`, { details: { task: t.id, field: "method" } }));
    }
    if (t.protocol === "" && t.method !== "") {
      problems.push(new KeelError("E_WORKFLOW_INVALID", `Task "${t.id}" has no protocol and its method "${t.method}" does not name one: add "protocol"`, {
        details: { task: t.id, field: "protocol" },
      }));
    }
  }

  const cycles = findCycles(def.tasks, byId);
  for (const path of cycles) {
    problems.push(new KeelError("E_WORKFLOW_CYCLE", `Tasks depend on each other in a cycle: ${path.join(" -> ")}; remove one of these dependencies`, {
      details: { path },
    }));
  }

  // References: only to transitive dependencies (the compat files reference grand-parents).
    for (const t of def.tasks) {
    for (const text of new Set(findReferenceTexts(t.params))) {
      const ref = parseReference(text, ids);
      if (ref === undefined) {
        if (!looksLikeTaskReference(text)) continue;
        const head = referenceHead(text) ?? text;
        problems.push(new KeelError("E_WORKFLOW_BAD_REFERENCE", `Task "${t.id}" references "\${${text}}", but "${head}" is not a task of this workflow${suggest(head, ids)}`, {
          details: { task: t.id, reference: text },
        }));
        continue;
      }
      if (ref.taskId === t.id || (cycles.length === 0 && !dependsOn(t.id, ref.taskId, byId))) {
        problems.push(new KeelError("E_WORKFLOW_BAD_REFERENCE", `Task "${t.id}" references "\${${text}}", but "${ref.taskId}" is not among its dependencies: add it to "dependencies"`, {
          details: { task: t.id, reference: text, refersTo: ref.taskId },
        }));
      }
    }
  }

  if (options.protocols) {
    const seen = new Map<string, ProtocolInfo | undefined>();
    const reported = new Set<string>();
    for (const t of def.tasks) {
      if (t.protocol === "" || t.method === "") continue;
      if (!seen.has(t.protocol)) seen.set(t.protocol, options.protocols(t.protocol));
      const info = seen.get(t.protocol);
      if (info === undefined) {
        problems.push(new KeelError("E_WORKFLOW_UNKNOWN_PROTOCOL", `Task "${t.id}" needs protocol "${t.protocol}", but there is no provider for ${t.protocol}: install a plugin that provides it`, {
          details: { task: t.id, protocol: t.protocol },
        }));
        reported.add(t.protocol);
      } else if (!methodAccepted(info.methods, t.method)) {
        problems.push(new KeelError("E_WORKFLOW_UNKNOWN_METHOD", `Task "${t.id}" calls "${t.method}", which ${t.protocol} does not have${suggest(t.method, info.methods)}; it has: ${info.methods.join(", ")}`, {
          details: { task: t.id, protocol: t.protocol, method: t.method },
        }));
      }
    }
  }
  return problems;
}

/**
 * Throws when {@link validateWorkflow} finds anything.
 * @throws {KeelError} `E_WORKFLOW_INVALID` whose message lists every problem and whose
 * `details.problems` holds each one's JSON (code, message, details).
 */
export function assertValidWorkflow(def: WorkflowDefinition, options: ValidateWorkflowOptions = {}): void {
  const problems = validateWorkflow(def, options);
  if (problems.length === 0) return;
  const lines = problems.map((p) => `- [${p.code}] ${p.message}`).join("\n");
  throw new KeelError("E_WORKFLOW_INVALID", `Workflow "${def.name}" has ${problems.length} problem(s):\n${lines}`, {
    details: { problems: problems.map((p) => p.toJSON()) },
  });
}

/** Each cycle once, as a path that returns to its start. Iterative, so 10,000-task chains are fine. */
function findCycles(tasks: readonly TaskDefinition[], byId: ReadonlyMap<string, TaskDefinition>): string[][] {
  const color = new Map<string, 1 | 2>();
  const cycles: string[][] = [];
  for (const root of tasks) {
    if (color.has(root.id)) continue;
    const stack: { id: string; next: number }[] = [{ id: root.id, next: 0 }];
    const onPath: string[] = [root.id];
    color.set(root.id, 1);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const deps = byId.get(top.id)?.dependencies ?? [];
      if (top.next < deps.length) {
        const d = deps[top.next++]!;
        if (!byId.has(d)) continue;
        const c = color.get(d);
        if (c === undefined) {
          color.set(d, 1);
          stack.push({ id: d, next: 0 });
          onPath.push(d);
        } else if (c === 1) {
          // The path runs from dependents to dependencies; show it as "a -> b": a needs b.
          cycles.push([...onPath.slice(onPath.indexOf(d)), d]);
        }
      } else {
        color.set(top.id, 2);
        stack.pop();
        onPath.pop();
      }
    }
  }
  return cycles;
}

/** Whether `target` is a dependency of `from`, directly or through others. */
function dependsOn(from: string, target: string, byId: ReadonlyMap<string, TaskDefinition>): boolean {
  const direct = byId.get(from)?.dependencies ?? [];
  if (direct.includes(target)) return true;
  const seen = new Set<string>(direct);
  const queue = [...direct];
  for (let i = 0; i < queue.length; i++) {
    for (const d of byId.get(queue[i]!)?.dependencies ?? []) {
      if (d === target) return true;
      if (!seen.has(d)) {
        seen.add(d);
        queue.push(d);
      }
    }
  }
  return false;
}
