//! MCP on the wire: JSON-RPC inspection of request bodies, server-sent events, and the
//! legacy HTTP+SSE transport's endpoint rewriting. Pure functions and small state
//! machines; nothing here knows about Pingora or does I/O.

pub mod arguments;
pub mod canonical;
pub mod filter;
pub mod handles;
pub mod jsonrpc;
pub mod legacy;
pub mod methods;
pub mod request_meta;
pub mod scan;
pub mod session;
pub mod sse;
pub mod stream;
