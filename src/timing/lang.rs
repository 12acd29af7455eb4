//! Language tags for variant choice and audience filters.
//!
//! Tags compare case-insensitively, with `_` read as `-` and `cmn` (Mandarin)
//! treated as `zh`: a member tagged `cmn-Hans` matches a `zh-Hans` variant and the
//! other way round. The deprecated `zh-yue`, `zh-cmn` and `zh-guoyu` prefixes read
//! as `yue`, `zh` and `zh`.
//!
//! A tag's **script** is the one it names, else the likely one for its language
//! and region from CLDR's likely-subtags data (`icu_locale`'s [`LocaleExpander`]):
//! `zh-TW` and `yue` are Traditional (`Hant`), `zh`, `zh-CN`, `yue-CN` and `wuu`
//! Simplified (`Hans`). A member's tag without a region takes the region of the
//! country they live in, so a member tagged `zh` in Taipei reads Traditional.
//!
//! A variant **fits** a wanted tag when both are of the same language and their
//! scripts agree (or either is unknown). Among fitting variants the best is, in
//! order: the same tag as written; the same tag up to `cmn` ≡ `zh`; a more general
//! variant (`en` for `en-GB`; the longer the better); a more specific one (`en-US`
//! for `en`); any other region (`en-US` for `en-GB`); ties in file order. For the
//! Chinese languages of ISO 639-3's `zh` macrolanguage (`yue`, `wuu`, `nan`, …) the
//! written standard in the same script (`zh-Hans` for `yue-Hans`) is the next
//! choice. See [`Variants::choose`] for the order of member and city.

use icu_locale::{LanguageIdentifier, LocaleExpander};

/// The individual languages of the ISO 639-3 macrolanguage `zh` (besides `cmn`,
/// which is folded into `zh` itself).
const CHINESE: [&str; 15] = [
    "cdo", "cjy", "cnp", "cpx", "csp", "czh", "czo", "gan", "hak", "hsn", "lzh", "mnp", "nan",
    "wuu", "yue",
];

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

/// Whether `key` equals `prefix` or extends it by whole subtags (both keys).
pub(crate) fn has_prefix(key: &str, prefix: &str) -> bool {
    key == prefix
        || (key.len() > prefix.len()
            && key.starts_with(prefix)
            && key.as_bytes()[prefix.len()] == b'-')
}

/// A tag parsed for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tag {
    /// As written, normalized.
    tag: String,
    /// The matching key ([`key`]).
    pub(crate) key: String,
    /// The language subtag of the key (`zh` for `cmn`).
    language: String,
    /// The script, named or likely (lowercase, `hans`); `None` when unknown.
    script: Option<String>,
}

impl Tag {
    /// Parses a tag; `region` (an ISO country code) stands in for a region the
    /// tag does not name when its likely script is looked up.
    pub(crate) fn new(text: &str, region: Option<&str>) -> Tag {
        let tag = normalize(text);
        let key = key(&tag);
        let mut subtags = key.split('-');
        let language = subtags.next().unwrap_or_default().to_string();
        let mut script = None;
        let mut own_region = None;
        for subtag in subtags {
            if subtag.len() == 4 && subtag.chars().all(|c| c.is_ascii_alphabetic()) {
                script.get_or_insert_with(|| subtag.to_string());
            } else if subtag.len() == 2
                || (subtag.len() == 3 && subtag.chars().all(|c| c.is_ascii_digit()))
            {
                own_region.get_or_insert(subtag);
            }
        }
        let script = script.or_else(|| likely_script(&language, own_region.or(region)));
        Tag { tag, key, language, script }
    }

    /// The same tag as the written standard of the `zh` macrolanguage, for the
    /// Chinese languages (`yue-Hans` → `zh-Hans`); `None` for any other.
    fn as_chinese(&self) -> Option<Tag> {
        if !CHINESE.contains(&self.language.as_str()) {
            return None;
        }
        let key = match &self.script {
            Some(script) => format!("zh-{script}"),
            None => "zh".to_string(),
        };
        Some(Tag { tag: key.clone(), key, language: "zh".to_string(), script: self.script.clone() })
    }

    /// How well a variant fits this wanted tag (lower is better), or `None`.
    fn fit(&self, variant: &Tag) -> Option<(u8, usize)> {
        if variant.language != self.language
            || self.script.as_ref().zip(variant.script.as_ref()).is_some_and(|(a, b)| a != b)
        {
            return None;
        }
        Some(if variant.tag == self.tag {
            (0, 0)
        } else if variant.key == self.key {
            (1, 0)
        } else if has_prefix(&self.key, &variant.key) {
            (2, usize::MAX - variant.key.len())
        } else if has_prefix(&variant.key, &self.key) {
            (3, 0)
        } else {
            (4, 0)
        })
    }
}

/// The likely script of a language in a region, lowercase (`zh`, `TW` → `hant`).
fn likely_script(language: &str, region: Option<&str>) -> Option<String> {
    let text = match region {
        Some(region) => format!("{language}-{region}"),
        None => language.to_string(),
    };
    let mut id = LanguageIdentifier::try_from_str(&text)
        .or_else(|_| LanguageIdentifier::try_from_str(language))
        .ok()?;
    // CLDR likely subtags, including languages below CLDR's basic coverage
    // (compiled data: constructing the expander costs nothing).
    LocaleExpander::new_extended().maximize(&mut id);
    id.script.map(|script| script.as_str().to_ascii_lowercase())
}

/// A campaign's variant tags (one per variant group, in file order).
#[derive(Debug, Default)]
pub(crate) struct Variants {
    tags: Vec<Tag>,
}

impl Variants {
    /// Adds the next group's tag.
    pub(crate) fn push(&mut self, tag: &str) {
        self.tags.push(Tag::new(tag, None));
    }

    /// The best-fitting group for one wanted tag (see the module docs).
    pub(crate) fn best(&self, wanted: &Tag) -> Option<usize> {
        self.tags
            .iter()
            .enumerate()
            .filter_map(|(index, variant)| wanted.fit(variant).map(|rank| (rank, index)))
            .min()
            .map(|(_, index)| index)
    }

    /// The group for a member: the member's own language, then its Chinese
    /// written standard; then the city's dialect, then its written standard.
    /// `None` leaves the campaign's `default_lang` to the caller.
    pub(crate) fn choose(&self, member: Option<&Tag>, city: Option<&Tag>) -> Option<usize> {
        [member, city].into_iter().flatten().find_map(|wanted| {
            self.best(wanted).or_else(|| wanted.as_chinese().and_then(|zh| self.best(&zh)))
        })
    }
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
        assert!(has_prefix("yue-hant-hk", "yue"));
        assert!(has_prefix("yue", "yue"));
        assert!(!has_prefix("yuex", "yue"));
        assert!(!has_prefix("yue", "yue-hant"));
    }

    #[test]
    fn scripts_are_named_or_likely() {
        let script = |tag: &str, region: Option<&str>| Tag::new(tag, region).script;
        assert_eq!(script("zh-Hant", Some("CN")).as_deref(), Some("hant"));
        assert_eq!(script("zh", None).as_deref(), Some("hans"));
        assert_eq!(script("zh", Some("TW")).as_deref(), Some("hant"));
        assert_eq!(script("zh-HK", Some("CN")).as_deref(), Some("hant"));
        assert_eq!(script("cmn", Some("TW")).as_deref(), Some("hant"));
        assert_eq!(script("yue", None).as_deref(), Some("hant"));
        assert_eq!(script("yue", Some("CN")).as_deref(), Some("hans"));
        assert_eq!(script("wuu", None).as_deref(), Some("hans"));
        assert_eq!(script("en-GB", None).as_deref(), Some("latn"));
    }

    #[test]
    fn variants_fit_by_language_script_then_closeness() {
        let mut variants = Variants::default();
        for tag in ["zh-Hans", "en", "en-US", "yue-Hant", "zh-Hant"] {
            variants.push(tag);
        }
        let best = |tag: &str, region: Option<&str>| variants.best(&Tag::new(tag, region));
        assert_eq!(best("en-GB", None), Some(1), "the more general variant first");
        assert_eq!(best("EN_us", None), Some(2));
        assert_eq!(best("yue-Hans", None), None, "no Cantonese in Simplified");
        assert_eq!(best("zh", Some("MO")), Some(4));
        let choose = |member: Option<&str>, city: &str| {
            variants.choose(
                member.map(|m| Tag::new(m, Some("CN"))).as_ref(),
                Some(&Tag::new(city, None)),
            )
        };
        assert_eq!(choose(None, "yue-Hans"), Some(0), "Guangzhou reads Simplified Chinese");
        assert_eq!(choose(Some("wuu"), "yue-Hant"), Some(0), "the member's language first");
        assert_eq!(choose(Some("fr"), "cmn-Hant"), Some(4));
        assert_eq!(choose(Some("fr"), "ja"), None);
    }
}
