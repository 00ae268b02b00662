// Code a model might write for `execute_code` (or `keel exec`): it discovers the tools, calls
// several, and returns one small answer instead of every intermediate result.
//   keel exec examples/code-mode/plan.js --tool examples/code-mode/tools.ts --context '{"userId":"u1"}'
const available = (await tools.__list__()).map((t) => t.name);
console.log(`tools: ${available.join(", ")}`);

const cities = ["Oslo", "Lisbon", "Tokyo"];
const reports = await Promise.all(cities.map((city) => tools.weather({ city })));
const mean = (await tools.add({ numbers: reports.map((r) => r.temperature) })) / reports.length;
const warmest = reports.reduce((a, b) => (b.temperature > a.temperature ? b : a));
const { userId } = await tools.whoami({});
console.log(`checked ${reports.length} cities for ${userId ?? "nobody"}`);

return {
  user: userId,
  warmest: warmest.city,
  meanTemperatureC: Math.round(mean * 10) / 10,
  sunny: reports.filter((r) => r.conditions === "sunny").map((r) => r.city),
};
