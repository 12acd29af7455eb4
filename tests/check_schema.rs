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

/// A small JSON Schema checker covering the keywords the generated schema uses
/// (`type`, `properties`, `required`, `additionalProperties: false`, `items`,
/// `enum`, `$ref`, `allOf`, `oneOf`/`anyOf`; it has no numeric bounds). TOML
/// date-times are strings, as editors present them.
fn conforms(root: &serde_json::Value, schema: &serde_json::Value, value: &toml::Value) -> bool {
    use serde_json::Value as J;
    if let Some(reference) = schema.get("$ref").and_then(J::as_str) {
        let name = reference.trim_start_matches("#/definitions/");
        return conforms(root, &root["definitions"][name], value);
    }
    if let Some(all) = schema.get("allOf").and_then(J::as_array)
        && !all.iter().all(|s| conforms(root, s, value))
    {
        return false;
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema.get(key).and_then(J::as_array)
            && !any.iter().any(|s| conforms(root, s, value))
        {
            return false;
        }
    }
    if let Some(choices) = schema.get("enum").and_then(J::as_array)
        && !choices.iter().any(|c| c.as_str() == value.as_str())
    {
        return false;
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            J::String(t) => vec![t.as_str()],
            J::Array(ts) => ts.iter().filter_map(J::as_str).collect(),
            _ => vec![],
        };
        let kind = match value {
            toml::Value::String(_) | toml::Value::Datetime(_) => "string",
            toml::Value::Integer(_) => "integer",
            toml::Value::Float(_) => "number",
            toml::Value::Boolean(_) => "boolean",
            toml::Value::Array(_) => "array",
            toml::Value::Table(_) => "object",
        };
        let fits = types.contains(&kind) || (kind == "integer" && types.contains(&"number"));
        if !fits {
            return false;
        }
    }
    match value {
        toml::Value::Table(table) => {
            let properties = schema.get("properties").and_then(J::as_object);
            if let Some(required) = schema.get("required").and_then(J::as_array)
                && !required.iter().filter_map(J::as_str).all(|k| table.contains_key(k))
            {
                return false;
            }
            table.iter().all(|(key, item)| match properties.and_then(|p| p.get(key)) {
                Some(sub) => conforms(root, sub, item),
                None => schema.get("additionalProperties") != Some(&J::Bool(false)),
            })
        }
        toml::Value::Array(items) => match schema.get("items") {
            Some(sub) => items.iter().all(|item| conforms(root, sub, item)),
            None => true,
        },
        _ => true,
    }
}

#[test]
fn example_campaigns_conform_to_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&almanac::campaign::json_schema()).expect("valid JSON");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let value: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(conforms(&schema, &schema, &value), "{} does not conform", path.display());
    }
    // And the checker rejects what the schema forbids.
    let typo: toml::Value = toml::from_str("id = \"x\"\nnmae = \"y\"").unwrap();
    assert!(!conforms(&schema, &schema, &typo));
    let bad_enum: toml::Value = toml::from_str(
        "id = \"x\"\nname = \"y\"\nchannel = \"log\"\ndefault_lang = \"en\"\n[timing]\ntrigger = \"weekly\"",
    )
    .unwrap();
    assert!(!conforms(&schema, &schema, &bad_enum));
}
