//! The committed editor schema `campaigns/campaign.schema.json` matches the Rust
//! types. Regenerate with `UPDATE_SCHEMA=1 cargo nextest run schema`.

use std::path::Path;

#[test]
fn campaign_schema_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns/campaign.schema.json");
    let generated = almanac::campaign::json_schema();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write the schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale (or missing): regenerate it with `UPDATE_SCHEMA=1 cargo nextest run schema`",
        path.display()
    );
}

#[test]
fn schema_requires_the_keys_the_language_requires() {
    let schema: serde_json::Value =
        serde_json::from_str(&almanac::campaign::json_schema()).expect("valid JSON");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("top-level required list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for key in ["id", "name", "channel", "default_lang", "timing"] {
        assert!(required.contains(&key), "`{key}` not required in {required:?}");
    }
    assert_eq!(schema["additionalProperties"], serde_json::Value::Bool(false));
    let properties = schema["properties"].as_object().expect("properties");
    for key in ["audience", "limits", "message", "starts", "ends", "purpose", "priority"] {
        assert!(properties.contains_key(key), "`{key}` missing from the schema");
    }
}
