/**
 * Code mode's sandbox contract: the {@link SandboxBackend} port that isolates code, and
 * {@link createCodeExecutor}, which runs model-written code on one with a tool registry, an
 * allow-list, limits and a frozen runtime context. The backends live in `plugins/sandbox/`.
 * @module
 */

export * from "./sandbox.ts";
