//! The differential test of the fast path: every template, and thousands of variations of
//! them, read by the scanner and by the serde reference must reach the same result.

use super::*;

/// Bodies clients send, and near misses of them.
const TEMPLATES: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
    r#" {"method":"resources/read","params":{"uri":"file:///a/b.txt"},"id":"r-7","jsonrpc":"2.0"} "#,
    r#"{"jsonrpc":"2.0","id":-3,"method":"prompts/get","params":{"name":"p","arguments":{"x":[1,2.5,true,null,{"y":{}}]}}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    r#"{"jsonrpc":"2.0","id":9,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#,
    r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"nope"}}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":null}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":[]}"#,
    r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
    r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{"k":1,"k":2},"name":"a"}}"#,
    r#"{"jsonrpc":"1.0","id":{},"method":7,"params":"x"}"#,
    r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":12}}"#,
    r#"{"jsonrpc":"2.0","id":1e400,"method":"ping","params":{"n":123456789012345678901234567890}}"#,
    r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"many","arguments":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10}}}"#,
    r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"many","arguments":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"a":10}}}"#,
    r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"many","arguments":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"i":10}}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"admin-delete"}}"#,
    r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","method":"ping"}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"Name":"fine"}}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ask","requestState":"rs1.k1.abc","inputResponses":{"a":{"action":"accept"}}}}"#,
    r#"{"jsonrpc":"2.0","id":"r","method":"resources/read","params":{"requestState":"rs1.k1.x-_","uri":"a:b"}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":7}}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"_meta":["io.modelcontextprotocol/protocolVersion"]}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolversion":"2025-11-25"}}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"_Meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","x":{"y":[1]}},"progress":1}}"#,
    r#"{"jsonrpc":"2.0","id":4,"method":"tasks/get","params":{"taskId":"t-1","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
    r#"{"jsonrpc":"2.0","id":4,"method":"tasks/cancel","params":{"taskId":7}}"#,
    r#"{"jsonrpc":"2.0","id":4,"method":"tasks/get","params":{"taskId":"t-1","TaskId":"t-2"}}"#,
    r#"{"jsonrpc":"2.0","id":9,"method":"resources/subscribe","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
    r#"{"jsonrpc":"2.0","id":9,"method":"resources/unsubscribe","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#,
];

#[test]
fn the_fast_path_reads_every_body_as_serde_does() {
    // Bytes that change JSON's meaning, spliced in at random places.
    let splices: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\",
        "\\u0041",
        "\\ud800",
        "0",
        "-",
        "1e5",
        ".5",
        "true",
        "nul",
        " ",
        "\t",
        "\u{e9}",
        "\u{1}",
        r#""name":"x","#,
        r#""id":[1],"#,
        r#""jsonrpc":"2.0","#,
        r#"{"a":{"a":1,"a":2}}"#,
        r#""Name":"x","#,
        r#""METHOD":"x","#,
        "\u{17f}",
        "\u{212a}",
        "N",
        r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"#,
        r#""io.modelcontextprotocol/protocolVersion":"x","#,
        r#""_meta":"#,
        "_",
        r#""taskId":"t","#,
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut fast, mut total) = (0, 0);
    for round in 0..30_000 {
        let template = TEMPLATES[round % TEMPLATES.len()];
        let mut body = template.as_bytes().to_vec();
        // A third of the bodies unchanged (they must take the fast path), the rest with
        // one to three edits.
        if round % 3 != 0 {
            for _ in 0..=next() % 3 {
                let at = (next() as usize) % (body.len() + 1);
                match next() % 3 {
                    0 => {
                        let s = splices[(next() as usize) % splices.len()];
                        body.splice(at..at, s.bytes());
                    }
                    1 if at < body.len() => {
                        body.remove(at);
                    }
                    _ => body.truncate(at.max(1)),
                }
            }
        }
        total += 1;
        let serde = inspect_with_serde(&body);
        if let Some(message) = fast::single_message(&body) {
            fast += 1;
            assert_eq!(
                finish(vec![message], false),
                serde,
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        assert_eq!(inspect(&body), serde, "{}", String::from_utf8_lossy(&body));
    }
    // Every unchanged template without an error in it takes the fast path.
    for template in TEMPLATES[..8].iter().chain(&TEMPLATES[22..25]) {
        assert!(
            fast::single_message(template.as_bytes()).is_some(),
            "{template}"
        );
    }
    assert!(fast::single_message(TEMPLATES[28].as_bytes()).is_some());
    assert!(fast::single_message(TEMPLATES[29].as_bytes()).is_some());
    assert!(fast > total / 5, "fast path taken {fast} of {total} times");
}
