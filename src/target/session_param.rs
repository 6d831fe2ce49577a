//! The legacy HTTP+SSE transport's session parameter (MCP 2024-11-05): the query
//! parameter that carries the session id, and the rule that a request's query holds at
//! most one, plainly spelled.
//!
//! Owns the parameter's names and that rule, which needs no route, so the target check
//! applies it before routing. Does not own opening the id (the session step's) or
//! rewriting the parameter in an announced endpoint (`mcp::legacy`).

use super::query::{base_name, Query};

/// Query parameters that carry the legacy transport's session id (TypeScript and Python
/// SDKs respectively), in the only spelling the gateway accepts.
pub const SESSION_PARAMS: [&str; 2] = ["sessionId", "session_id"];

/// Why a query's session parameter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionParamError {
    /// More than one parameter a framework could read as the session id: frameworks
    /// disagree about which one counts (Starlette the last, `qs` makes an array).
    Repeated,
    /// A session parameter spelled other than exactly `sessionId` or `session_id`
    /// (encoded, another case, `sessionId[]`): the gateway would not check it, and a
    /// framework that decodes or folds names would read it.
    Spelling,
}

impl SessionParamError {
    pub fn message(self) -> &'static str {
        match self {
            SessionParamError::Repeated => "the query has more than one session parameter",
            SessionParamError::Spelling => {
                "the session parameter must be spelled exactly sessionId or session_id"
            }
        }
    }
}

/// True when a framework could read `name` as the session parameter: its base name
/// (see [`base_name`]) is `sessionid` or `session_id` in any case.
pub fn is_session_name(name: &str) -> bool {
    let base = base_name(name);
    SESSION_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(&base))
}

/// The session id a query carries: `None` without a session parameter, the value of the
/// one plainly spelled session parameter, or a refusal (see [`SessionParamError`]).
pub fn session_param_of(query: &Query) -> Result<Option<&str>, SessionParamError> {
    let mut found = None;
    for p in query.params.iter().filter(|p| is_session_name(&p.name)) {
        if found.is_some() {
            return Err(SessionParamError::Repeated);
        }
        found = Some(p);
    }
    let Some(p) = found else {
        return Ok(None);
    };
    if p.name_encoded || !SESSION_PARAMS.contains(&p.name.as_str()) {
        return Err(SessionParamError::Spelling);
    }
    Ok(Some(p.value.as_deref().unwrap_or("")))
}

/// `query` with the session parameter's value (see [`session_param_of`]) replaced by
/// `id`, for the upstream.
pub fn with_session_id(query: &Query, id: &str) -> Query {
    let mut query = query.clone();
    for p in query.params.iter_mut().filter(|p| is_session_name(&p.name)) {
        p.value = Some(id.to_string());
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_gets_its_own_id_in_the_canonical_query() {
        let query = Query::parse("a=1&sessionId=v1.k.x").unwrap();
        assert_eq!(session_param_of(&query), Ok(Some("v1.k.x")));
        assert_eq!(
            with_session_id(&query, "up+1").canonical(),
            "a=1&sessionId=up%2B1"
        );
    }
}
