// node:fs plus `globSync`, for the MCP conformance suite on Node 20.
//
// @modelcontextprotocol/conformance imports `globSync` from node:fs, which Node added in
// 22. conformance_preload.mjs resolves the suite's `fs` imports to this module instead;
// everything else gets the real node:fs. The glob package (pinned in package.json)
// provides the function; Node's form of `exclude` (a predicate) is applied on its result.
import fs from "node:fs";
import { globSync as globPackageSync } from "glob";

export * from "node:fs";
export default fs;

export function globSync(pattern, options = {}) {
  if (typeof fs.globSync === "function") return fs.globSync(pattern, options);
  const { exclude, withFileTypes, ...rest } = options;
  const found = globPackageSync(pattern, { ...rest, withFileTypes: Boolean(withFileTypes) });
  return typeof exclude === "function" ? found.filter((entry) => !exclude(entry)) : found;
}
