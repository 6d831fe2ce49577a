use super::*;
use crate::mcp::jsonrpc::inspect;

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

/// A 2026-07-28 request of `method` with `params` (without braces) and the envelope.
fn modern(method: &str, params: &str) -> Inspected {
    let sep = if params.is_empty() { "" } else { "," };
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{{params}{sep}{META}}}}}"#
    );
    inspect(body.as_bytes()).unwrap()
}

/// The same request without the envelope (MCP 2025-11-25 and earlier).
fn legacy(method: &str, params: &str) -> Inspected {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{{params}}}}}"#);
    inspect(body.as_bytes()).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    map
}

const V: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

#[test]
fn a_modern_request_with_all_its_headers_passes() {
    let call = modern("tools/call", r#""name":"echo","arguments":{"m":"hi"}"#);
    let h = headers(&[V, ("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")]);
    assert_eq!(check(&h, &call), Ok(()));
    let read = modern("resources/read", r#""uri":"file:///a b.txt""#);
    let h = headers(&[
        V,
        ("mcp-method", "resources/read"),
        ("mcp-name", "file:///a b.txt"),
    ]);
    assert_eq!(check(&h, &read), Ok(()));
    let prompt = modern("prompts/get", r#""name":"greet""#);
    let h = headers(&[V, ("mcp-method", "prompts/get"), ("mcp-name", "greet")]);
    assert_eq!(check(&h, &prompt), Ok(()));
    let list = modern("tools/list", "");
    assert_eq!(
        check(&headers(&[V, ("mcp-method", "tools/list")]), &list),
        Ok(())
    );
    let discover = modern("server/discover", "");
    assert_eq!(
        check(&headers(&[V, ("mcp-method", "server/discover")]), &discover),
        Ok(())
    );
}

#[test]
fn the_protocol_version_header_is_required_and_must_equal_the_body() {
    let list = modern("tools/list", "");
    let method = ("mcp-method", "tools/list");
    assert_eq!(
        check(&headers(&[method]), &list),
        Err(MetaError::MissingVersion)
    );
    for other in [
        "2025-11-25",
        "2026-07-29",
        "2026-07-28x",
        "",
        "2026-07-28,2025-11-25",
    ] {
        let h = headers(&[("mcp-protocol-version", other), method]);
        assert_eq!(check(&h, &list), Err(MetaError::VersionMismatch), "{other}");
    }
    // Optional white space around a value is not part of it (parsers and SDKs drop it).
    let spaced = headers(&[("mcp-protocol-version", " 2026-07-28\t"), method]);
    assert_eq!(check(&spaced, &list), Ok(()));
    // Whatever the body names, the header must say the same.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2027-01-01"}}}"#;
    let future = inspect(body.as_bytes()).unwrap();
    assert_eq!(
        check(&headers(&[V, method]), &future),
        Err(MetaError::VersionMismatch)
    );
    let h = headers(&[("mcp-protocol-version", "2027-01-01"), method]);
    assert_eq!(check(&h, &future), Ok(()));
}

#[test]
fn a_version_that_is_not_a_string_is_refused() {
    for value in ["null", "20260728", r#"["2026-07-28"]"#, "{}"] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"_meta":{{"io.modelcontextprotocol/protocolVersion":{value}}}}}}}"#
        );
        let inspected = inspect(body.as_bytes()).unwrap();
        let h = headers(&[V, ("mcp-method", "ping")]);
        assert_eq!(
            check(&h, &inspected),
            Err(MetaError::VersionNotAString),
            "{value}"
        );
        assert_eq!(
            check(&HeaderMap::new(), &inspected),
            Err(MetaError::VersionNotAString),
            "{value}"
        );
    }
}

#[test]
fn a_modern_header_without_a_claim_in_the_body_is_refused() {
    // The Python SDK serves a request by the 2026-07-28 rules when the header names that
    // version; the TypeScript SDK when the body does. They must agree.
    let call = legacy("tools/call", r#""name":"echo""#);
    for version in ["2026-07-28", "2027-01-01", "draft", "2025-11-25 "] {
        let trimmed = version.trim();
        let h = headers(&[
            ("mcp-protocol-version", version),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]);
        let expected = if HANDSHAKE_VERSIONS.contains(&trimmed) {
            Ok(())
        } else {
            Err(MetaError::VersionWithoutClaim)
        };
        assert_eq!(check(&h, &call), expected, "{version}");
    }
    let initialize = legacy("initialize", r#""protocolVersion":"2025-11-25""#);
    assert_eq!(
        check(&headers(&[V]), &initialize),
        Err(MetaError::VersionWithoutClaim)
    );
    // A notification names no version in the header rules of 2026-07-28: passed on.
    let note = inspect(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert_eq!(check(&headers(&[V]), &note), Ok(()));
}

#[test]
fn mcp_method_is_required_on_every_modern_request_and_must_match() {
    let list = modern("tools/list", "");
    assert_eq!(check(&headers(&[V]), &list), Err(MetaError::MissingMethod));
    for other in ["tools/call", "Tools/list", "tools/list/", ""] {
        let h = headers(&[V, ("mcp-method", other)]);
        assert_eq!(
            check(&h, &list),
            Err(MetaError::MethodMismatch),
            "{other:?}"
        );
    }
}

#[test]
fn mcp_name_is_required_on_calls_reads_and_gets_and_must_match() {
    for (method, member, value) in [
        ("tools/call", "name", "echo"),
        ("resources/read", "uri", "file:///etc/hosts"),
        ("prompts/get", "name", "greet"),
    ] {
        let body = modern(method, &format!(r#""{member}":"{value}""#));
        let h = headers(&[V, ("mcp-method", method)]);
        assert_eq!(check(&h, &body), Err(MetaError::MissingName), "{method}");
        for other in ["other", "", "Echo", "file:///etc/passwd"] {
            let h = headers(&[V, ("mcp-method", method), ("mcp-name", other)]);
            assert_eq!(
                check(&h, &body),
                Err(MetaError::NameMismatch),
                "{method} {other}"
            );
        }
        let h = headers(&[V, ("mcp-method", method), ("mcp-name", value)]);
        assert_eq!(check(&h, &body), Ok(()), "{method}");
    }
    // Other methods carry none; one there says what the body does not.
    let list = modern("tools/list", "");
    let h = headers(&[V, ("mcp-method", "tools/list"), ("mcp-name", "echo")]);
    assert_eq!(check(&h, &list), Err(MetaError::NameMismatch));
    // resources/subscribe names a resource: optional, compared when present.
    let sub = modern("resources/subscribe", r#""uri":"a://b""#);
    let method = ("mcp-method", "resources/subscribe");
    assert_eq!(check(&headers(&[V, method]), &sub), Ok(()));
    assert_eq!(
        check(&headers(&[V, method, ("mcp-name", "a://c")]), &sub),
        Err(MetaError::NameMismatch)
    );
}

#[test]
fn mcp_name_on_the_tasks_methods_mirrors_the_task_id() {
    for method in TASK_NAME_METHODS {
        let body = modern(method, r#""taskId":"task-7""#);
        let m = ("mcp-method", method);
        assert_eq!(
            check(&headers(&[V, m]), &body),
            Ok(()),
            "{method}: optional"
        );
        assert_eq!(
            check(&headers(&[V, m, ("mcp-name", "task-7")]), &body),
            Ok(()),
            "{method}"
        );
        assert_eq!(
            check(&headers(&[V, m, ("mcp-name", &sentinel("task-7"))]), &body),
            Ok(()),
            "{method}"
        );
        assert_eq!(
            check(&headers(&[V, m, ("mcp-name", "task-8")]), &body),
            Err(MetaError::NameMismatch),
            "{method}"
        );
        // A task id that is not a string is refused before (see `mcp::handles`).
        let numeric =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"taskId":7}}}}"#);
        assert!(inspect(numeric.as_bytes()).is_err(), "{method}");
    }
    // tasks/list and tasks/result name no task by Mcp-Name.
    let result = modern("tasks/result", r#""taskId":"task-7""#);
    let h = headers(&[V, ("mcp-method", "tasks/result"), ("mcp-name", "task-7")]);
    assert_eq!(check(&h, &result), Err(MetaError::NameMismatch));
}

fn sentinel(value: &str) -> String {
    format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode(value)
    )
}

#[test]
fn the_base64_sentinel_is_decoded_before_comparing() {
    let call = modern("tools/call", r#""name":"wetter-für-köln""#);
    let encoded = format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode("wetter-für-köln")
    );
    let h = headers(&[V, ("mcp-method", "tools/call"), ("mcp-name", &encoded)]);
    assert_eq!(check(&h, &call), Ok(()));
    let other = format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode("delete_repo")
    );
    let h = headers(&[V, ("mcp-method", "tools/call"), ("mcp-name", &other)]);
    assert_eq!(check(&h, &call), Err(MetaError::NameMismatch));
    // A name that looks like the sentinel itself travels encoded.
    let literal = modern("tools/call", r#""name":"=?base64?ZWNobw==?=""#);
    let h = headers(&[
        V,
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?ZWNobw==?="),
    ]);
    assert_eq!(check(&h, &literal), Err(MetaError::NameMismatch));
    let wrapped = format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode("=?base64?ZWNobw==?=")
    );
    let h = headers(&[V, ("mcp-method", "tools/call"), ("mcp-name", &wrapped)]);
    assert_eq!(check(&h, &literal), Ok(()));
    // Plain names that only start like it are themselves.
    let plain = modern("tools/call", r#""name":"=?base64?x""#);
    let h = headers(&[V, ("mcp-method", "tools/call"), ("mcp-name", "=?base64?x")]);
    assert_eq!(check(&h, &plain), Ok(()));
    let upper = modern("tools/call", r#""name":"=?BASE64?ZWNobw==?=""#);
    let h = headers(&[
        V,
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?BASE64?ZWNobw==?="),
    ]);
    assert_eq!(check(&h, &upper), Ok(()), "the markers are case-sensitive");
}

#[test]
fn a_malformed_sentinel_is_refused() {
    assert_eq!(
        decode_header_value("=?base64?ZWNobw==?=").as_deref(),
        Some("echo")
    );
    assert_eq!(decode_header_value("=?base64??=").as_deref(), Some(""));
    assert_eq!(decode_header_value("echo").as_deref(), Some("echo"));
    for bad in [
        "=?base64?ZWNobw?=",     // padding missing
        "=?base64?ZWNobx==?=",   // non-zero trailing bits: not canonical
        "=?base64?ZW Nobw==?=",  // a space
        "=?base64?ZWNobw==\n?=", // a line break
        "=?base64?ZWNo-w==?=",   // the URL-safe alphabet
        "=?base64?/w==?=",       // 0xFF: not UTF-8
        "=?base64?=",            // read as "" by one SDK and as itself by another
        "=?base64?ZWNobw===?=",
    ] {
        assert_eq!(decode_header_value(bad), None, "{bad:?}");
    }
    let call = modern("tools/call", r#""name":"echo""#);
    let h = headers(&[
        V,
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?ZWNobx==?="),
    ]);
    assert_eq!(check(&h, &call), Err(MetaError::BadEncoding(Header::Name)));
}

#[test]
fn header_values_outside_visible_ascii_are_refused() {
    let call = modern("tools/call", r#""name":"köln""#);
    for (name, which) in [
        ("mcp-name", Header::Name),
        ("mcp-method", Header::Method),
        ("mcp-protocol-version", Header::ProtocolVersion),
        ("mcp-param-city", Header::Param),
    ] {
        let mut h = headers(&[V, ("mcp-method", "tools/call"), ("mcp-name", "x")]);
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes("köln".as_bytes()).unwrap(),
        );
        assert_eq!(
            check(&h, &call),
            Err(MetaError::NotVisibleAscii(which)),
            "{name}"
        );
    }
}

#[test]
fn mcp_param_headers_are_well_formed_and_only_on_tool_calls() {
    let call = modern(
        "tools/call",
        r#""name":"sql","arguments":{"region":"us-west1"}"#,
    );
    let base = [V, ("mcp-method", "tools/call"), ("mcp-name", "sql")];
    let with = |extra: (&'static str, &'static str)| {
        let mut pairs = base.to_vec();
        pairs.push(extra);
        headers(&pairs)
    };
    assert_eq!(
        check(&with(("Mcp-Param-Region", "us-west1")), &call),
        Ok(())
    );
    assert_eq!(
        check(
            &with(("mcp-param-greeting", "=?base64?SGVsbG8sIOS4lueVjA==?=")),
            &call
        ),
        Ok(())
    );
    assert_eq!(
        check(&with(("mcp-param-region", "=?base64?SGVsbG8?=")), &call),
        Err(MetaError::BadEncoding(Header::Param))
    );
    let list = modern("tools/list", "");
    let h = headers(&[V, ("mcp-method", "tools/list"), ("mcp-param-region", "x")]);
    assert_eq!(check(&h, &list), Err(MetaError::ParamWithoutArguments));
    let old = legacy("prompts/get", r#""name":"p""#);
    let h = headers(&[("mcp-param-region", "x")]);
    assert_eq!(check(&h, &old), Err(MetaError::ParamWithoutArguments));
}

#[test]
fn modern_notifications_check_the_headers_they_carry() {
    let body = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":1,{META}}}}}"#
    );
    let note = inspect(body.as_bytes()).unwrap();
    assert_eq!(check(&HeaderMap::new(), &note), Ok(()));
    assert_eq!(
        check(
            &headers(&[V, ("mcp-method", "notifications/cancelled")]),
            &note
        ),
        Ok(())
    );
    assert_eq!(
        check(&headers(&[("mcp-protocol-version", "2025-11-25")]), &note),
        Err(MetaError::VersionMismatch)
    );
    assert_eq!(
        check(&headers(&[("mcp-method", "notifications/progress")]), &note),
        Err(MetaError::MethodMismatch)
    );
}

#[test]
fn older_requests_keep_optional_headers_checked_when_present() {
    let call = legacy("tools/call", r#""name":"echo""#);
    let v = ("mcp-protocol-version", "2025-11-25");
    assert_eq!(check(&HeaderMap::new(), &call), Ok(()));
    assert_eq!(check(&headers(&[v]), &call), Ok(()));
    assert_eq!(
        check(&headers(&[v, ("mcp-method", "tools/call")]), &call),
        Ok(())
    );
    assert_eq!(check(&headers(&[("mcp-name", "echo")]), &call), Ok(()));
    assert_eq!(
        check(&headers(&[("mcp-method", "tools/list")]), &call),
        Err(MetaError::MethodMismatch)
    );
    assert_eq!(
        check(&headers(&[("mcp-name", "delete")]), &call),
        Err(MetaError::NameMismatch)
    );
    assert_eq!(
        check(&headers(&[("mcp-name", "=?base64?ZWNobw==?=")]), &call),
        Ok(()),
        "the sentinel is read in every generation"
    );
    let response = inspect(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap();
    assert_eq!(check(&headers(&[v]), &response), Ok(()));
    assert_eq!(
        check(&headers(&[("mcp-method", "response")]), &response),
        Err(MetaError::MethodMismatch)
    );
    assert_eq!(
        check(&headers(&[("mcp-name", "x")]), &response),
        Err(MetaError::NameMismatch)
    );
}

#[test]
fn batches_carry_no_mirrored_header_and_no_claim() {
    let batch = inspect(
        br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#,
    )
    .unwrap();
    assert_eq!(check(&HeaderMap::new(), &batch), Ok(()));
    for pair in [
        ("mcp-method", "ping"),
        ("mcp-name", "x"),
        ("mcp-param-x", "y"),
    ] {
        assert_eq!(
            check(&headers(&[pair]), &batch),
            Err(MetaError::HeadersOnBatch),
            "{pair:?}"
        );
    }
    let body = format!(
        r#"[{{"jsonrpc":"2.0","id":1,"method":"ping"}},{{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{{{META}}}}}]"#
    );
    let claimed = inspect(body.as_bytes()).unwrap();
    assert_eq!(
        check(&HeaderMap::new(), &claimed),
        Err(MetaError::BatchWithClaim)
    );
    assert_eq!(
        check(&headers(&[V]), &claimed),
        Err(MetaError::BatchWithClaim)
    );
}

#[test]
fn reasons_echo_nothing_and_name_their_header() {
    let all = [
        MetaError::NotVisibleAscii(Header::Name),
        MetaError::BadEncoding(Header::Param),
        MetaError::MissingVersion,
        MetaError::VersionMismatch,
        MetaError::VersionNotAString,
        MetaError::VersionWithoutClaim,
        MetaError::MissingMethod,
        MetaError::MethodMismatch,
        MetaError::MissingName,
        MetaError::NameMismatch,
        MetaError::ParamWithoutArguments,
        MetaError::HeadersOnBatch,
        MetaError::BatchWithClaim,
    ];
    for e in all {
        if let Some(h) = e.header() {
            let name = h.name().trim_end_matches('*');
            assert!(e.reason().contains(name), "{e:?}: {}", e.reason());
        }
    }
}

#[test]
fn a_header_value_the_gateway_writes_reads_back_as_the_value() {
    for value in [
        "task-1",
        "a b",
        " lead",
        "trail ",
        "t\u{e9}che",
        "=?base64?dGFzaw==?=",
        "",
        "tab\there",
    ] {
        let encoded = encode_header_value(value);
        let header = http::HeaderValue::from_str(&encoded).unwrap();
        let text = header.to_str().unwrap().trim_matches([' ', '\t']);
        assert_eq!(
            decode_header_value(text).as_deref(),
            Some(value),
            "{value:?}"
        );
    }
    assert_eq!(encode_header_value("task-1"), "task-1");
    assert!(encode_header_value("t\u{e9}che").starts_with("=?base64?"));
}
