//! BCP-47 language tags as campaigns use them: `language[-script][-region]`
//! (`yue-Hant-HK`, `cmn-Hans`, `zh-Hans`, `en`, `en-US`), checked for syntax and
//! canonicalized for case (`yue-hant` → `yue-Hant`).

/// Parses a tag of the form `language[-script][-region]` and returns it with
/// canonical case, or a message saying what was expected.
pub fn canonical_lang(tag: &str) -> Result<String, String> {
    if tag.is_empty() {
        return Err("empty language tag".to_string());
    }
    if tag.contains('_') {
        return Err(format!(
            "`{tag}` uses `_`; BCP-47 separates subtags with `-` (`{}`)",
            tag.replace('_', "-")
        ));
    }
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or_default();
    if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "`{language}` is not a language subtag (expected 2 or 3 letters, e.g. `zh`, `yue`, `en`)"
        ));
    }
    let mut out = language.to_ascii_lowercase();
    let mut seen_script = false;
    let mut seen_region = false;
    for part in parts {
        let letters = part.chars().all(|c| c.is_ascii_alphabetic());
        let digits = part.chars().all(|c| c.is_ascii_digit());
        if part.len() == 4 && letters && !seen_script && !seen_region {
            seen_script = true;
            out.push('-');
            out.push_str(&part[..1].to_ascii_uppercase());
            out.push_str(&part[1..].to_ascii_lowercase());
        } else if ((part.len() == 2 && letters) || (part.len() == 3 && digits)) && !seen_region {
            seen_region = true;
            out.push('-');
            out.push_str(&part.to_ascii_uppercase());
        } else {
            return Err(format!(
                "`{part}` in `{tag}` is not a script (4 letters, e.g. `Hant`) or region \
                 (2 letters or 3 digits, e.g. `HK`) in the expected order language[-script][-region]"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::canonical_lang;

    #[test]
    fn canonicalizes_case() {
        assert_eq!(canonical_lang("yue-hant").unwrap(), "yue-Hant");
        assert_eq!(canonical_lang("YUE-HANT-hk").unwrap(), "yue-Hant-HK");
        assert_eq!(canonical_lang("en-us").unwrap(), "en-US");
        assert_eq!(canonical_lang("es-419").unwrap(), "es-419");
        assert_eq!(canonical_lang("cmn-Hans").unwrap(), "cmn-Hans");
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "zh_CN", "chinese", "zh-", "zh-Hans-Hant", "zh-CN-Hans", "z", "zh-C"] {
            assert!(canonical_lang(bad).is_err(), "{bad} accepted");
        }
    }
}
