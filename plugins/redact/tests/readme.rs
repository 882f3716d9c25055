//! The config example in README.md must be a config the plugin accepts.

use redact::Redactor;

#[test]
fn readme_example_config_is_accepted() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("README has a TOML example") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("the TOML example ends");
    let doc: toml::Table = toml::from_str(&readme[start..end]).expect("the example is valid TOML");
    let stage = &doc["stages"].as_array().expect("[[stages]]")[0];
    assert_eq!(stage["plugin"].as_str(), Some("redact"));
    let mut config = serde_json::to_value(&stage["config"]).expect("config converts to JSON");
    // The host merges `[stages.secrets]` into the config before `init`.
    assert!(
        stage["secrets"].get("hash_key").is_some(),
        "the example takes hash_key from a secret"
    );
    config["hash_key"] = "from-the-environment".into();
    Redactor::from_config(&config).expect("the README example is a valid config");

    // Without the secret the example's hash actions are rejected: the merge matters.
    config.as_object_mut().unwrap().remove("hash_key");
    let err = Redactor::from_config(&config)
        .err()
        .expect("hash actions need a hash_key");
    assert!(err.starts_with("hash_key: required"), "{err}");
}
