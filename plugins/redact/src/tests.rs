//! Tests of whole events through [`Redactor`]: typed fields, metadata walking, field rules,
//! key-name secrets and actions together. Detector-level cases live next to each detector.

use serde_json::{Value, json};

use super::*;

fn event(metadata: Value) -> Event {
    Event {
        event_id: "7eed8d14-f06d-4fef-b019-66a0c381e88f".into(),
        event_type: "tool_invoke".into(),
        timestamp_us: 0,
        actor_type: Some("user".into()),
        actor_id: Some("obrien@mail.example.net".into()),
        agent_id: Some("agent-22".into()),
        server_name: Some("github-mcp".into()),
        tool_name: Some("create_issue".into()),
        decision: Some("allow".into()),
        outcome: None,
        reason: Some("policy rbac.allow_tools matched".into()),
        request_id: Some("a6cecc1b-78e5-4061-b311-d8a3c2ce6f44".into()),
        correlation_id: None,
        source_ip: Some("203.0.113.9".into()),
        source: "gateway".into(),
        metadata: metadata.to_string(),
    }
}

fn redactor(config: Value) -> Redactor {
    Redactor::from_config(&config).expect("valid config")
}

/// Redact `metadata` with `config` and return the resulting metadata.
fn meta(config: Value, metadata: Value) -> Value {
    let mut e = event(metadata);
    redactor(config).redact(&mut e).expect("redacts");
    serde_json::from_str(&e.metadata).expect("metadata stays JSON")
}

#[test]
fn typed_fields_are_scanned() {
    let mut e = event(json!({}));
    e.reason = Some("denied for bob@example.com".into());
    redactor(json!({})).redact(&mut e).unwrap();
    assert_eq!(e.actor_id.as_deref(), Some("[REDACTED:email]"));
    assert_eq!(e.source_ip.as_deref(), Some("[REDACTED:ipv4]"));
    assert_eq!(e.reason.as_deref(), Some("denied for [REDACTED:email]"));
    // Not scanned, or nothing to find: unchanged.
    assert_eq!(e.request_id.as_deref(), Some("a6cecc1b-78e5-4061-b311-d8a3c2ce6f44"));
    assert_eq!(e.agent_id.as_deref(), Some("agent-22"));
    assert_eq!(e.event_id, "7eed8d14-f06d-4fef-b019-66a0c381e88f");
}

#[test]
fn scan_fields_limits_typed_scanning() {
    let mut e = event(json!({}));
    redactor(json!({"scan_fields": ["reason"]})).redact(&mut e).unwrap();
    assert_eq!(e.actor_id.as_deref(), Some("obrien@mail.example.net"));
    assert_eq!(e.source_ip.as_deref(), Some("203.0.113.9"));
}

#[test]
fn field_actions_on_typed_fields() {
    let config =
        json!({"fields": {"actor.id": "hash", "agent_id": "mask", "source_ip": "drop"}, "hash_key": "test-key"});
    let mut e = event(json!({}));
    redactor(config.clone()).redact(&mut e).unwrap();
    let hashed = e.actor_id.clone().unwrap();
    assert!(
        hashed.starts_with("[HASH:field:") && hashed.len() == "[HASH:field:]".len() + 32,
        "{hashed}"
    );
    assert_eq!(e.agent_id.as_deref(), Some("[REDACTED:field]"));
    assert_eq!(e.source_ip, None);

    // Stable for the same key, different for another.
    let mut again = event(json!({}));
    redactor(config).redact(&mut again).unwrap();
    assert_eq!(again.actor_id, e.actor_id);
    let mut other_key = event(json!({}));
    redactor(json!({"fields": {"actor.id": "hash"}, "hash_key": "other"}))
        .redact(&mut other_key)
        .unwrap();
    assert_ne!(other_key.actor_id, e.actor_id);
}

#[test]
fn detector_actions() {
    let config = json!({"actions": {"email": "hash", "ssn": "drop"}, "hash_key": "k"});
    let out = meta(
        config,
        json!({"to": "mail bob@example.com", "q": "ssn = '391-55-0476'", "list": ["x", "078-05-1120"], "keep": "ok"}),
    );
    let to = out["to"].as_str().unwrap();
    assert!(to.starts_with("mail [HASH:email:") && !to.contains("bob"), "{to}");
    // Dropped: the key, and an array holding a dropped element.
    assert!(out.get("q").is_none() && out.get("list").is_none(), "{out}");
    assert_eq!(out["keep"], "ok");
}

#[test]
fn default_action_applies_to_detectors_without_one() {
    let out = meta(
        json!({"default_action": "drop", "actions": {"email": "mask"}}),
        json!({"a": "bob@x.io", "b": "203.0.113.9"}),
    );
    assert_eq!(out, json!({"a": "[REDACTED:email]"}));
}

#[test]
fn disabled_detectors_leave_matches() {
    let out = meta(json!({"detectors": ["ssn"]}), json!({"a": "bob@x.io 391-55-0476"}));
    assert_eq!(out["a"], "bob@x.io [REDACTED:ssn]");
}

#[test]
fn secret_keys_redact_whole_values_at_any_depth() {
    let out = meta(
        json!({}),
        json!({
            "args": {
                "headers": {
                    "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
                    "X-Request-Id": "a46d6753-ec14-4cb4-8e73-ca47ea90a8f0",
                },
                "db": {"password": 123456, "user": "svc", "session": {"id": "abc", "n": 1}},
                "items": [{"api_key": "k1"}, {"name": "n"}],
                "password_set": true,
                "cookie": "",
            }
        }),
    );
    let args = &out["args"];
    assert_eq!(args["headers"]["Authorization"], "[REDACTED:secret]");
    assert_eq!(args["headers"]["X-Request-Id"], "a46d6753-ec14-4cb4-8e73-ca47ea90a8f0");
    assert_eq!(args["db"]["password"], "[REDACTED:secret]");
    assert_eq!(args["db"]["user"], "svc");
    assert_eq!(args["db"]["session"], "[REDACTED:secret]");
    assert_eq!(args["items"], json!([{"api_key": "[REDACTED:secret]"}, {"name": "n"}]));
    assert_eq!(args["password_set"], true);
    assert_eq!(args["cookie"], "");
}

#[test]
fn secret_key_action_and_lists() {
    let out = meta(
        json!({"secret_key_action": "drop", "extra_secret_keys": ["pin"]}),
        json!({"pin": 1234, "token": "x", "user": "u"}),
    );
    assert_eq!(out, json!({"user": "u"}));
    let out = meta(json!({"secret_keys": ["pin"]}), json!({"pin": 1234, "token": "x"}));
    assert_eq!(out, json!({"pin": "[REDACTED:secret]", "token": "x"}));
    let out = meta(json!({"secret_keys": []}), json!({"password": "x", "q": "password=y"}));
    assert_eq!(out, json!({"password": "x", "q": "password=y"}));
    let out = meta(
        json!({"secret_key_action": "hash", "hash_key": "k"}),
        json!({"token": {"a": [1, 2]}}),
    );
    assert!(out["token"].as_str().unwrap().starts_with("[HASH:secret:"), "{out}");
}

#[test]
fn secrets_inside_strings() {
    let out = meta(
        json!({}),
        json!({
            "url": "https://api.example.com/login?user=svc&password=pWwtG2Bg#YS&token=ghp_JN6U6PrPod6eWGP4xkGXY4nttSt2JxkSSVDM&page=2",
            "env": "AWS_ACCESS_KEY_ID=AKIAK0QIA9CN3K6CYMWG REGION=us-east-1 BUILD=2.16.28",
        }),
    );
    assert_eq!(
        out["url"],
        "https://api.example.com/login?user=svc&password=[REDACTED:secret]&token=[REDACTED:github_token]&page=2"
    );
    assert_eq!(
        out["env"],
        "AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key] REGION=us-east-1 BUILD=2.16.28"
    );
}

#[test]
fn key_value_secrets_with_only_one_kind_of_separator() {
    // The key/value pass is skipped for strings holding neither `=` nor `:`; each of the two
    // separators alone must still bring it in.
    let out = meta(
        json!({}),
        json!({"eq": "db password=hunter2 ok", "colon": "db password: hunter2 ok", "none": "password hunter2"}),
    );
    assert_eq!(out["eq"], "db password=[REDACTED:secret] ok");
    assert_eq!(out["colon"], "db password: [REDACTED:secret] ok");
    assert_eq!(out["none"], "password hunter2");
}

#[test]
fn private_key_blocks() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAs9\nq83Z==\n-----END RSA PRIVATE KEY-----";
    let out = meta(json!({}), json!({"file": format!("id_rsa:\n{pem}\n# end"), "pem": pem}));
    assert_eq!(out["file"], "id_rsa:\n[REDACTED:private_key]\n# end");
    assert_eq!(out["pem"], "[REDACTED:private_key]");
}

#[test]
fn field_rules_in_metadata() {
    let out = meta(
        json!({"fields": {"metadata.args.body": "drop", "metadata.args.note": "mask", "metadata.items.id": "hash"}, "hash_key": "k"}),
        json!({"args": {"body": "x", "note": {"nested": 1}, "other": "y"}, "items": [{"id": 7}, {"id": 8, "k": "v"}]}),
    );
    assert!(out["args"].get("body").is_none());
    assert_eq!(out["args"]["note"], "[REDACTED:field]");
    assert_eq!(out["args"]["other"], "y");
    let id0 = out["items"][0]["id"].as_str().unwrap();
    let id1 = out["items"][1]["id"].as_str().unwrap();
    assert!(
        id0.starts_with("[HASH:field:") && id1.starts_with("[HASH:field:") && id0 != id1,
        "{out}"
    );
    assert_eq!(out["items"][1]["k"], "v");
}

#[test]
fn allow_and_deny_fields() {
    let metadata = json!({
        "gateway_version": "10.1.2.3",
        "args": {"text": "mail bob@x.io", "password": "p", "cmd": "ls", "inner": {"deep": "bob@x.io"}},
    });
    let out = meta(
        json!({"allow_fields": ["metadata.gateway_version", "metadata.args"], "deny_fields": ["metadata.args.cmd"]}),
        metadata.clone(),
    );
    // Allowed: never scanned, not even for key names; the more specific deny still applies.
    assert_eq!(out["gateway_version"], "10.1.2.3");
    assert_eq!(out["args"]["text"], "mail bob@x.io");
    assert_eq!(out["args"]["password"], "p");
    assert_eq!(out["args"]["inner"]["deep"], "bob@x.io");
    assert_eq!(out["args"]["cmd"], "[REDACTED:field]");

    // Without the allow list the same values are redacted.
    let out = meta(json!({}), metadata.clone());
    assert_eq!(out["gateway_version"], "[REDACTED:ipv4]");
    assert_eq!(out["args"]["text"], "mail [REDACTED:email]");
    assert_eq!(out["args"]["password"], "[REDACTED:secret]");

    // Allowing metadata as a whole leaves it byte for byte.
    let mut e = event(metadata);
    let before = e.metadata.clone();
    redactor(json!({"allow_fields": ["metadata"]})).redact(&mut e).unwrap();
    assert_eq!(e.metadata, before);

    // Typed fields: allowed ones are not scanned, denied ones use the default action.
    let mut e = event(json!({}));
    redactor(json!({"allow_fields": ["actor.id"], "deny_fields": ["agent_id"], "default_action": "drop"}))
        .redact(&mut e)
        .unwrap();
    assert_eq!(e.actor_id.as_deref(), Some("obrien@mail.example.net"));
    assert_eq!(e.agent_id, None);
}

#[test]
fn keys_holding_pii_are_renamed() {
    let out = meta(json!({}), json!({"by_user": {"bob@x.io": 1, "amy@x.io": 2, "n": 3}}));
    let keys: Vec<&String> = out["by_user"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["[REDACTED:email]", "[REDACTED:email]#2", "n"]);
    // A key that already reads like a numbered one is not overwritten, and numbering goes on.
    let mut e = event(json!({}));
    e.metadata =
        r#"{"m": {"a@x.io": 1, "[REDACTED:email]#2 c@x.io": 2, "b@x.io": 3, "d@x.io": 4, "e@x.io": 5}}"#.into();
    redactor(json!({})).redact(&mut e).unwrap();
    assert_eq!(
        e.metadata,
        r#"{"m": {"[REDACTED:email]": 1, "[REDACTED:email]#2 [REDACTED:email]": 2, "[REDACTED:email]#2": 3, "[REDACTED:email]#3": 4, "[REDACTED:email]#4": 5}}"#
    );
}

#[test]
fn card_numbers_as_json_numbers() {
    let out = meta(
        json!({}),
        json!({"card": 4111111111111111u64, "order": 7066907439150008u64, "latency_ms": 237}),
    );
    assert_eq!(
        out,
        json!({"card": "[REDACTED:credit_card]", "order": 7066907439150008u64, "latency_ms": 237})
    );
}

#[test]
fn unchanged_metadata_is_not_reserialised() {
    let mut e = event(json!({}));
    e.metadata = "{ \"b\": 1,  \"a\": \"4.6.6\" }".into();
    redactor(json!({})).redact(&mut e).unwrap();
    assert_eq!(e.metadata, "{ \"b\": 1,  \"a\": \"4.6.6\" }");
    e.metadata = String::new();
    redactor(json!({})).redact(&mut e).unwrap();
    assert_eq!(e.metadata, "");
}

#[test]
fn invalid_metadata_is_an_error() {
    let r = redactor(json!({}));
    let mut bad = event(json!({}));
    bad.metadata = "{not json".into();
    let err = r.redact(&mut bad.clone()).unwrap_err();
    assert!(err.starts_with("metadata is not valid JSON"), "{err}");
    let outcomes = r.redact_batch(vec![event(json!({"a": "bob@x.io"})), bad]);
    assert_eq!(outcomes.len(), 2);
    match &outcomes[0] {
        Outcome::Keep(e) => assert_eq!(e.metadata, r#"{"a":"[REDACTED:email]"}"#),
        other => panic!("expected keep, got {other:?}"),
    }
    assert!(matches!(&outcomes[1], Outcome::Error(e) if e.starts_with("metadata is not valid JSON")));
}

#[test]
fn plugin_init_and_batch() {
    let Err(err) = RedactPlugin::init(json!({"bogus": 1})) else {
        panic!("bad config accepted")
    };
    assert!(err.contains("bogus"));
    let mut plugin = RedactPlugin::init(json!({})).unwrap();
    // Contract 1.1, as the host drives it: the fields the plugin reads, packed; patches back.
    let reads = plugin.reads();
    assert!(
        reads.contains(&Field::ActorId) && reads.contains(&Field::Metadata),
        "{reads:?}"
    );
    assert!(!reads.contains(&Field::EventId) && !reads.contains(&Field::Source));
    let mut broken = event(json!({}));
    broken.metadata = "{not json".into();
    let events = vec![event(json!({"n": 1})), event(json!({"x": "391-55-0476"})), broken];
    let packed = auditflow_sdk::stage::pack(&events, &reads);
    let verdicts = auditflow_sdk::stage::run(&mut plugin, &packed);
    let patches: Vec<_> = verdicts
        .patches
        .iter()
        .map(|p| (p.event, p.field, p.value.clone().unwrap_or_default()))
        .collect();
    assert!(
        patches.contains(&(0, Patchable::ActorId, "[REDACTED:email]".into())),
        "{patches:?}"
    );
    assert!(
        patches.contains(&(1, Patchable::Metadata, r#"{"x":"[REDACTED:ssn]"}"#.into())),
        "{patches:?}"
    );
    assert!(
        !patches.iter().any(|p| p.0 == 0 && p.1 == Patchable::Metadata),
        "unchanged metadata is not sent back"
    );
    assert_eq!(verdicts.failed.len(), 1);
    assert_eq!(verdicts.failed[0].0, 2, "the event whose metadata is not JSON fails");
    assert!(verdicts.dropped.is_empty());
}

#[test]
fn redactor_is_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Redactor>();
    let r = std::sync::Arc::new(redactor(json!({"actions": {"email": "hash"}, "hash_key": "k"})));
    let outputs: Vec<String> = (0..4)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut e = event(json!({"m": "bob@x.io"}));
                r.redact(&mut e).unwrap();
                e.metadata
            })
        })
        .map(|t| t.join().unwrap())
        .collect();
    assert!(
        outputs.iter().all(|o| o == &outputs[0] && o.contains("[HASH:email:")),
        "{outputs:?}"
    );
}

/// Redact one typed field's text with the default config.
fn reason(text: &str) -> Option<String> {
    let mut e = event(json!({}));
    e.reason = Some(text.to_owned());
    redactor(json!({})).redact(&mut e).unwrap();
    e.reason
}

#[test]
fn full_width_and_zero_width_characters_do_not_hide_matches() {
    let token = "ghp_JN6U6PrPod6eWGP4xkGXY4nttSt2JxkSSVDM";
    let cases = [
        ("mail alice＠example.com now", "mail [REDACTED:email] now"),
        ("mail al\u{200b}ice@example.com now", "mail [REDACTED:email] now"),
        ("mail alice@exam\u{ad}ple.com now", "mail [REDACTED:email] now"),
        (
            "mail ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ now",
            "mail [REDACTED:email] now",
        ),
        ("ssn ３９１-５５-０４７６ ok", "ssn [REDACTED:ssn] ok"),
        ("ssn 391\u{2060}-55-0476 ok", "ssn [REDACTED:ssn] ok"),
        (
            "card ４１１１ １１１１ １１１１ １１１１ ok",
            "card [REDACTED:credit_card] ok",
        ),
        ("card 4111\u{feff}111111111111 ok", "card [REDACTED:credit_card] ok"),
        ("pass\u{200c}word=hunter2 x", "pass\u{200c}word=[REDACTED:secret] x"),
    ];
    for (input, expected) in cases {
        assert_eq!(reason(input).as_deref(), Some(expected), "{input:?}");
    }
    let hidden = format!("gh\u{200b}p_{}", &token[4..]);
    assert_eq!(
        reason(&format!("token {hidden} end")).as_deref(),
        Some("token [REDACTED:github_token] end")
    );
    let hidden = format!("{}\u{200d}{}", &token[..20], &token[20..]);
    assert_eq!(
        reason(&format!("t {hidden}")).as_deref(),
        Some("t [REDACTED:github_token]")
    );
}

#[test]
fn normalisation_changes_nothing_without_a_match() {
    for text in [
        "ﬁle ＡＢＣ ｖ１.２ zoë\u{200b}x soft\u{ad}hyphen ① ㎏ ½ café",
        "１２３-４５",
        "ｏｒｄｅｒ ４６８６９７８２５２５２９３３５",
        "\u{feff}plain",
    ] {
        assert_eq!(reason(text).as_deref(), Some(text), "{text:?}");
    }
    // Around a match, the rest of the original text is kept as it was.
    let text = "ﬁle ＡＢＣ al\u{200b}ice＠example.com \u{200b} ① end";
    assert_eq!(
        reason(text),
        Some("ﬁle ＡＢＣ [REDACTED:email] \u{200b} ① end".to_owned())
    );
}

#[test]
fn normalisation_applies_in_metadata_strings_and_keys() {
    let out = meta(
        json!({}),
        json!({"m": "to bob＠x.io", "pass\u{200b}word": "hunter2", "by": {"amy＠x.io": 1}}),
    );
    assert_eq!(
        out,
        json!({"m": "to [REDACTED:email]", "pass\u{200b}word": "[REDACTED:secret]", "by": {"[REDACTED:email]": 1}})
    );
    // As JSON escapes too.
    let mut e = event(json!({}));
    e.metadata = r#"{"m": "al\u200bice@example.com"}"#.into();
    redactor(json!({})).redact(&mut e).unwrap();
    assert_eq!(e.metadata, r#"{"m": "[REDACTED:email]"}"#);
}
