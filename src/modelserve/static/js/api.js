// Calls to this server's JSON API, with the tab's API key; the equivalent curl commands.

const KEY_NAME = "modelserve.apiKey";

/** The API key of this browser tab (sessionStorage: gone when the tab closes), or null. */
export function apiKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

/** Listeners told when the server answers 401 (no key, or a wrong one). */
const unauthorized = new Set();
export function onUnauthorized(listener) {
  unauthorized.add(listener);
}

/**
 * Call the API; never throws for an HTTP error.
 * @returns {Promise<{ok: boolean, status: number, body: any, ms: number, retryAfter: number}>}
 */
export async function call(path, { method = "GET", json, body, headers = {} } = {}) {
  const sent = { Accept: "application/json", ...headers };
  const key = apiKey();
  if (key) sent["X-API-Key"] = key;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, { method, headers: sent, body, cache: "no-store" });
  } catch (err) {
    return { ok: false, status: 0, body: { error: `The server did not answer (${err.message})` }, ms: 0, retryAfter: 0 };
  }
  const text = await response.text();
  const ms = performance.now() - started;
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: text.slice(0, 500) };
  }
  if (response.status === 401) unauthorized.forEach((listener) => listener(parsed));
  const retryAfter = Number(response.headers.get("Retry-After")) || 0;
  return { ok: response.ok, status: response.status, body: parsed, ms, retryAfter };
}

function shellQuote(text) {
  return `'${String(text).replaceAll("'", "'\\''")}'`;
}

/** The curl command that sends the same request (the key as a variable, never its value). */
export function curlCommand(path, { json, files } = {}) {
  const parts = [`curl -s ${shellQuote(new URL(path, location.origin).href)}`];
  if (apiKey()) parts.push(`-H "X-API-Key: $MODELSERVE_API_KEY"`);
  if (json !== undefined) {
    const text = JSON.stringify(json);
    parts.push("-H 'Content-Type: application/json'");
    parts.push(text.length <= 1500 ? `-d ${shellQuote(text)}` : "-d @request.json");
  }
  for (const name of files || []) parts.push(`-F ${shellQuote(`image=@${name}`)}`);
  return parts.join(" \\\n  ");
}
