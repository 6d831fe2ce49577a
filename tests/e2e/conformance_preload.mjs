// Preload for running the MCP conformance suite (@modelcontextprotocol/conformance) from
// drawbridge's e2e tests:
//   node --import ./conformance_preload.mjs node_modules/@modelcontextprotocol/conformance/dist/index.js ...
//
// 1. Node 20: the suite imports `globSync` from node:fs (added in Node 22). A resolve hook
//    hands the suite's own `fs` imports conformance_fs.mjs (node:fs plus globSync from the
//    glob package); nothing outside the suite's package is redirected, and on a Node that
//    has fs.globSync no hook is registered.
// 2. A bearer token: the suite's `server` command has no option for one. When
//    CONFORMANCE_BEARER_TOKEN is set, every HTTP request to CONFORMANCE_BEARER_ORIGIN (and
//    to no other origin) gets `Authorization: Bearer <token>`, unless it carries its own.
//    The suite's HTTP clients — global fetch and undici's request(), which send through
//    undici's global dispatcher (replaced here by one that adds the header), and
//    node:http's request() for the raw header-validation probes (wrapped here) — all carry it.
import fs from "node:fs";
import http from "node:http";
import { register } from "node:module";

if (typeof fs.globSync !== "function") {
  const shim = new URL("./conformance_fs.mjs", import.meta.url).href;
  const hooks = `
    const SHIM = ${JSON.stringify(shim)};
    export async function resolve(specifier, context, next) {
      const fromSuite = (context.parentURL ?? "").includes("/@modelcontextprotocol/conformance/");
      if (fromSuite && (specifier === "fs" || specifier === "node:fs")) {
        return { url: SHIM, shortCircuit: true };
      }
      return next(specifier, context);
    }`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
}

const token = process.env.CONFORMANCE_BEARER_TOKEN;
const origin = process.env.CONFORMANCE_BEARER_ORIGIN;
if (token) {
  if (!origin) {
    console.error("conformance_preload: CONFORMANCE_BEARER_TOKEN needs CONFORMANCE_BEARER_ORIGIN");
    process.exit(2);
  }
  const { Agent, setGlobalDispatcher } = await import("undici");
  const withBearer = (headers) => {
    const value = `Bearer ${token}`;
    if (headers == null) return { authorization: value };
    if (Array.isArray(headers)) {
      // undici's flat [name, value, name, value, ...] form
      const names = headers.filter((_, i) => i % 2 === 0).map((n) => String(n).toLowerCase());
      return names.includes("authorization") ? headers : [...headers, "authorization", value];
    }
    const entries = headers instanceof Headers ? [...headers.entries()] : Object.entries(headers);
    if (entries.some(([name]) => name.toLowerCase() === "authorization")) return headers;
    return { ...Object.fromEntries(entries), authorization: value };
  };
  const originalRequest = http.request;
  http.request = function requestWithBearer(options, ...rest) {
    const plain = options && typeof options === "object" && !(options instanceof URL);
    if (plain && `http://${options.hostname ?? options.host}:${options.port}` === origin) {
      options = { ...options, headers: withBearer(options.headers) };
    }
    return originalRequest.call(this, options, ...rest);
  };
  setGlobalDispatcher(new Agent().compose((dispatch) => (options, handler) => {
    const target = new URL(String(options.origin)).origin;
    return dispatch(target === origin ? { ...options, headers: withBearer(options.headers) } : options,
      handler);
  }));
}
