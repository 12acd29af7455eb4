//! Language tags for variant choice and audience filters.
//!
//! Tags compare case-insensitively, with `cmn` (Mandarin) treated as `zh`: a
//! member tagged `cmn-Hans` matches a `zh-Hans` variant and the other way round.
//! The deprecated `zh-yue`, `zh-cmn` and `zh-guoyu` prefixes read as `yue`, `zh`
//! and `zh`.

/// A tag as written, normalized for comparison: trimmed, lowercase, `-` separators.
pub(crate) fn normalize(tag: &str) -> String {
    tag.trim().replace('_', "-").to_ascii_lowercase()
}

/// The canonical matching key of a tag: normalized, `cmn` folded into `zh`.
pub(crate) fn key(tag: &str) -> String {
    let lower = normalize(tag);
    let (primary, rest) = match lower.split_once('-') {
        Some((primary, rest)) => (primary.to_string(), Some(rest.to_string())),
        None => (lower.clone(), None),
    };
    let (primary, rest) = match (primary.as_str(), rest.as_deref()) {
        ("zh", Some(rest)) if rest == "yue" || rest.starts_with("yue-") => (
            "yue".to_string(),
            rest.strip_prefix("yue").map(|r| r.trim_start_matches('-').to_string()),
        ),
        ("zh", Some(rest))
            if rest == "cmn"
                || rest.starts_with("cmn-")
                || rest == "guoyu"
                || rest.starts_with("guoyu-") =>
        {
            let tail = rest.split_once('-').map(|(_, t)| t.to_string());
            ("zh".to_string(), tail)
        }
        ("cmn", rest) => ("zh".to_string(), rest.map(str::to_string)),
        (_, rest) => (primary.clone(), rest.map(str::to_string)),
    };
    match rest {
        Some(rest) if !rest.is_empty() => format!("{primary}-{rest}"),
        _ => primary,
    }
}

/// The BCP-47 truncation chain of a key, longest first: `yue-hant-hk`,
/// `yue-hant`, `yue`.
pub(crate) fn chain(key: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(key);
    std::iter::from_fn(move || {
        let current = next?;
        next = current.rfind('-').map(|cut| &current[..cut]);
        Some(current)
    })
}

/// The primary language subtag of a key.
pub(crate) fn primary(key: &str) -> &str {
    key.split('-').next().unwrap_or(key)
}

/// Whether `key` equals `prefix` or extends it by whole subtags (both keys).
pub(crate) fn has_prefix(key: &str, prefix: &str) -> bool {
    key == prefix
        || (key.len() > prefix.len()
            && key.starts_with(prefix)
            && key.as_bytes()[prefix.len()] == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmn_and_zh_are_the_same_language() {
        assert_eq!(key("cmn-Hans"), key("zh-Hans"));
        assert_eq!(key("zh-cmn-Hans"), "zh-hans");
        assert_eq!(key("zh-yue"), "yue");
        assert_eq!(key("yue_Hant_HK"), "yue-hant-hk");
        assert_eq!(key("en"), "en");
    }

    #[test]
    fn truncation_chain_goes_longest_first() {
        let chain: Vec<&str> = chain("yue-hant-hk").collect();
        assert_eq!(chain, ["yue-hant-hk", "yue-hant", "yue"]);
        assert_eq!(primary("yue-hant-hk"), "yue");
        assert!(has_prefix("yue-hant-hk", "yue"));
        assert!(has_prefix("yue", "yue"));
        assert!(!has_prefix("yuex", "yue"));
        assert!(!has_prefix("yue", "yue-hant"));
    }
}
