//! Step 3 of the request path: a POST body read strictly as JSON-RPC 2.0 (one message or
//! a batch) before anything is sent upstream. The result lists the operations it carries;
//! the ids are kept so that the gateway's own errors answer the right request.
//!
//! Owns parsing and error-object rendering; it does not decide anything.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One JSON-RPC message of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The id exactly as the client wrote it (`1`, `"abc"`); `None` for notifications
    /// and for responses the client sends to server requests.
    pub id: Option<Box<str>>,
    pub kind: MessageKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// A request (has an id) or notification (has none) naming a method.
    Call { method: String },
    /// A response to a request the server sent (sampling, elicitation, roots).
    Response,
}

/// What a request body contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub messages: Vec<Message>,
    pub batch: bool,
}

impl Inspected {
    /// Ids of the requests that expect an answer.
    pub fn request_ids(&self) -> impl Iterator<Item = &str> {
        self.messages
            .iter()
            .filter(|m| matches!(m.kind, MessageKind::Call { .. }))
            .filter_map(|m| m.id.as_deref())
    }
}

/// Why a body is not JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Not JSON at all (JSON-RPC code -32700).
    NotJson,
    /// JSON, but not a JSON-RPC 2.0 message or batch (code -32600).
    NotJsonRpc(&'static str),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<String>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// Reads a body as a JSON-RPC message or batch.
pub fn inspect(body: &[u8]) -> Result<Inspected, Malformed> {
    let first = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .ok_or(Malformed::NotJson)?;
    if *first == b'[' {
        let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|_| Malformed::NotJson)?;
        if items.is_empty() {
            return Err(Malformed::NotJsonRpc("an empty batch"));
        }
        let messages = items
            .into_iter()
            .map(|raw| message(raw.get()))
            .collect::<Result<_, _>>()?;
        Ok(Inspected {
            messages,
            batch: true,
        })
    } else {
        let text = std::str::from_utf8(body).map_err(|_| Malformed::NotJson)?;
        Ok(Inspected {
            messages: vec![message(text)?],
            batch: false,
        })
    }
}

fn message(text: &str) -> Result<Message, Malformed> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            Malformed::NotJsonRpc("a message that is not a JSON object")
        } else {
            Malformed::NotJson
        }
    })?;
    if envelope.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return Err(Malformed::NotJsonRpc(
            "a message without \"jsonrpc\": \"2.0\"",
        ));
    }
    let id = match envelope.id {
        None => None,
        Some(raw) => {
            let id = raw.get();
            let valid = id.starts_with('"')
                || id.starts_with('-')
                || id.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(Malformed::NotJsonRpc(
                    "an id that is not a string or number",
                ));
            }
            Some(Box::from(id))
        }
    };
    let kind = match (
        envelope.method,
        envelope.result.is_some() || envelope.error.is_some(),
    ) {
        (Some(method), false) => MessageKind::Call { method },
        (None, true) if id.is_some() => MessageKind::Response,
        _ => {
            return Err(Malformed::NotJsonRpc(
                "a message that is neither a request, a notification nor a response",
            ))
        }
    };
    Ok(Message { id, kind })
}

/// A JSON-RPC error object answering `id` (`null` when unknown).
pub fn error_object(id: Option<&str>, code: i64, message: &str) -> String {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{code},"message":{message}}}}}"#,
        id.unwrap_or("null")
    )
}

/// The error body for a refused request: one object, or a batch with one per request.
pub fn error_body(inspected: Option<&Inspected>, code: i64, message: &str) -> String {
    match inspected {
        Some(i) if i.batch => {
            let mut ids = i.request_ids().peekable();
            if ids.peek().is_none() {
                return error_object(None, code, message);
            }
            let items: Vec<String> = ids
                .map(|id| error_object(Some(id), code, message))
                .collect();
            format!("[{}]", items.join(","))
        }
        Some(i) => error_object(i.request_ids().next(), code, message),
        None => error_object(None, code, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: Option<&str>, method: &str) -> Message {
        Message {
            id: id.map(Box::from),
            kind: MessageKind::Call {
                method: method.into(),
            },
        }
    }

    #[test]
    fn single_request_notification_and_response() {
        let r =
            inspect(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#)
                .unwrap();
        assert_eq!(r.messages, vec![call(Some("7"), "tools/call")]);
        assert!(!r.batch);
        let n = inspect(br#" {"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.messages, vec![call(None, "notifications/initialized")]);
        let resp = inspect(br#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#).unwrap();
        assert_eq!(resp.messages[0].kind, MessageKind::Response);
        assert_eq!(resp.request_ids().count(), 0);
    }

    #[test]
    fn batches_keep_every_id() {
        let b = inspect(br#"[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#).unwrap();
        assert!(b.batch);
        assert_eq!(b.request_ids().collect::<Vec<_>>(), ["\"a\"", "2"]);
    }

    #[test]
    fn refuses_what_is_not_json_rpc() {
        assert_eq!(inspect(b""), Err(Malformed::NotJson));
        assert_eq!(inspect(b"{not json"), Err(Malformed::NotJson));
        assert_eq!(inspect(b"{\"id\":1} trailing"), Err(Malformed::NotJson));
        assert!(matches!(inspect(b"[]"), Err(Malformed::NotJsonRpc(_))));
        assert!(matches!(inspect(b"42"), Err(Malformed::NotJsonRpc(_))));
        assert!(matches!(
            inspect(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#),
            Err(Malformed::NotJsonRpc(_))
        ));
        assert!(matches!(
            inspect(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#),
            Err(Malformed::NotJsonRpc(_))
        ));
        assert!(matches!(
            inspect(br#"{"jsonrpc":"2.0","id":1}"#),
            Err(Malformed::NotJsonRpc(_))
        ));
    }

    #[test]
    fn error_bodies_answer_the_request_ids() {
        let single = inspect(br#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#).unwrap();
        let body: serde_json::Value =
            serde_json::from_str(&error_body(Some(&single), -32001, "upstream \"down\"")).unwrap();
        assert_eq!(body["id"], "x");
        assert_eq!(body["error"]["code"], -32001);
        assert_eq!(body["error"]["message"], "upstream \"down\"");

        let batch = inspect(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#).unwrap();
        let body: serde_json::Value =
            serde_json::from_str(&error_body(Some(&batch), -32001, "down")).unwrap();
        assert_eq!(body[0]["id"], 1);
        assert_eq!(body[1]["id"], 2);

        let none: serde_json::Value =
            serde_json::from_str(&error_body(None, -32700, "parse error")).unwrap();
        assert!(none["id"].is_null());
    }
}
