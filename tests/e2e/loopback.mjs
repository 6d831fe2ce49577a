// Loopback-only preload for the e2e peers (`node --import ./loopback.mjs …`).
//
// server-everything binds every interface and has no host option. This module owns
// one thing: every TCP `listen()` in the process (net.Server, and so http.Server and
// express) binds 127.0.0.1, whatever host the caller asked for. Unix-socket paths and
// inherited handles are left alone.
import net from "node:net";

const LOOPBACK = "127.0.0.1";
const originalListen = net.Server.prototype.listen;

function isPort(value) {
  return (
    typeof value === "number" ||
    (typeof value === "string" && /^\d+$/.test(value))
  );
}

// Rewrites listen()'s overloaded arguments into (options, [callback]) with host forced.
function loopbackArgs(args) {
  const callback =
    typeof args[args.length - 1] === "function" ? args[args.length - 1] : undefined;
  const rest = callback ? args.slice(0, -1) : args.slice();
  const first = rest[0];

  let options;
  if (first === undefined || first === null) {
    options = { port: 0 };
  } else if (isPort(first)) {
    // listen(port, [host], [backlog])
    options = { port: Number(first) };
    const backlog = rest.slice(1).find((arg) => typeof arg === "number");
    if (backlog !== undefined) options.backlog = backlog;
  } else if (typeof first === "object" && !first._handle && first.fd === undefined
             && first.path === undefined && !("handle" in first)) {
    // listen({ port, host, ... })
    options = { ...first };
  } else {
    return args; // a unix socket path, a handle or an fd: not a TCP bind
  }
  options.host = LOOPBACK;
  delete options.ipv6Only;
  return callback ? [options, callback] : [options];
}

net.Server.prototype.listen = function listenOnLoopback(...args) {
  return originalListen.apply(this, loopbackArgs(args));
};
