//! drawbridge: an authorizing gateway for MCP servers, on Pingora.
//!
//! The request path (docs/ARCHITECTURE.md): route → authenticate → inspect → authorize → session →
//! credential → upstream, and back through list filtering, session sealing and metrics.
//! `proxy` orchestrates the steps; each step lives in the module that owns it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod client_addr;
pub mod config;
pub mod exchange;
pub mod explain;
pub mod jose;
pub mod managed_headers;
pub mod mcp;
pub mod oauth_client;
pub mod pin;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod refusal;
pub mod secret;
pub mod server;
pub mod target;
pub mod telemetry;
pub mod upstream_dns;
