/**
 * Hiding credentials in URLs for messages and logs, for every registry database and store.
 * @module
 */

/** `url` with its password (and any `password`-like query parameter) replaced by `***`; other text unchanged. */
export function maskUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url.replace(/(\/\/[^/@:]*:)[^/@]*@/, "$1***@");
  }
  const secret = (key: string) => /password|secret|token|key|credential/i.test(key);
  const secretParams = [...parsed.searchParams.keys()].filter(secret);
  // A URL without secrets is returned as given, not re-serialized.
  if (parsed.password === "" && secretParams.length === 0) return url;
  if (parsed.password !== "") parsed.password = "***";
  for (const key of secretParams) parsed.searchParams.set(key, "***");
  return parsed.href;
}
