import { testStore } from "./_store-conformance.ts";
import { createMemoryStore } from "./memory-store.ts";

testStore("memory", () => Promise.resolve(createMemoryStore()));
