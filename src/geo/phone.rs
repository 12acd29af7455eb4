//! Phone numbers: parsing (`+86`, `0086`, spaces, dashes, trunk `0`), the
//! compact +86 prefix table (libphonenumber's zh geocoding data, see
//! `data/phone_cn.tsv`) and the country-calling-code table.

use super::GeoError;

/// Longest prefix length (national significant number digits) in the table.
const MAX_PREFIX: usize = 7;
/// Shortest prefix length.
const MIN_PREFIX: usize = 2;

/// A run of consecutive prefixes of one length that map to one city.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u32,
    end: u32,
    city: u32,
    multi: bool,
}

/// What the prefix table says about a Chinese number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixHit {
    /// Gazetteer index of the city.
    pub city: u32,
    /// The source entry named several prefectures; the first was taken.
    pub multi: bool,
    /// How many digits matched.
    pub prefix_len: u8,
}

/// The +86 prefix table: per prefix length, sorted runs.
#[derive(Debug, Default)]
pub struct PhoneTable {
    by_len: [Vec<Run>; MAX_PREFIX + 1],
}

impl PhoneTable {
    /// Parses `phone_cn.tsv`; `city_of` maps a GeoNames id to a gazetteer index.
    pub fn parse(text: &str, city_of: impl Fn(u32) -> Option<u32>) -> Result<Self, GeoError> {
        let mut table = PhoneTable::default();
        for (line_no, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let bad = |what: &str| GeoError::Data {
                file: "phone_cn.tsv",
                line: line_no + 1,
                message: what.to_string(),
            };
            let mut fields = line.split('\t').map(str::parse::<u32>);
            let mut next = |what: &str| fields.next().and_then(Result::ok).ok_or_else(|| bad(what));
            let len = next("prefix length")? as usize;
            let start = next("first prefix")?;
            let count = next("count")?;
            let gn = next("GeoNames id")?;
            let multi = next("multi flag")? == 1;
            if !(MIN_PREFIX..=MAX_PREFIX).contains(&len) {
                return Err(bad("prefix length between 2 and 7"));
            }
            let city = city_of(gn)
                .ok_or_else(|| bad(&format!("GeoNames id {gn} that is in the gazetteer")))?;
            table.by_len[len].push(Run { start, end: start + count, city, multi });
        }
        for runs in &mut table.by_len {
            runs.sort_by_key(|r| r.start);
        }
        Ok(table)
    }

    /// Longest-prefix lookup of a national significant number (digits only).
    pub fn lookup(&self, nsn: &[u8]) -> Option<PrefixHit> {
        let mut key: u32 = 0;
        let mut keys = [0u32; MAX_PREFIX + 1];
        for (i, d) in nsn.iter().take(MAX_PREFIX).enumerate() {
            key = key * 10 + u32::from(d - b'0');
            keys[i + 1] = key;
        }
        let longest = nsn.len().min(MAX_PREFIX);
        (MIN_PREFIX..=longest).rev().find_map(|len| {
            let runs = &self.by_len[len];
            let key = keys[len];
            let i = runs.partition_point(|r| r.start <= key);
            let run = runs.get(i.checked_sub(1)?)?;
            (key < run.end).then_some(PrefixHit {
                city: run.city,
                multi: run.multi,
                prefix_len: len as u8,
            })
        })
    }

    /// Number of prefixes covered (for reports).
    pub fn prefix_count(&self) -> usize {
        self.by_len.iter().flatten().map(|r| (r.end - r.start) as usize).sum()
    }
}

/// A syntactically valid phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A Chinese number.
    China {
        /// The national significant number (no trunk 0).
        nsn: Digits,
        /// A mobile number (11 digits starting 13–19), not a landline.
        mobile: bool,
    },
    /// Another country.
    Foreign {
        /// Its calling code.
        calling_code: u16,
    },
}

/// Up to 20 ASCII digits, without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digits {
    buf: [u8; 20],
    len: u8,
}

impl Digits {
    /// The digits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Parses a phone number as written. `calling_code_known` says whether a
/// 1–3 digit country calling code exists.
pub fn parse(input: &str, calling_code_known: impl Fn(u16) -> bool) -> Result<Parsed, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err("empty phone number".into());
    }
    let mut digits = Digits { buf: [0; 20], len: 0 };
    let mut plus = false;
    for (i, c) in trimmed.char_indices() {
        match c {
            '0'..='9' => {
                if usize::from(digits.len) == digits.buf.len() {
                    return Err(format!("too long: more than {} digits", digits.buf.len()));
                }
                digits.buf[usize::from(digits.len)] = c as u8;
                digits.len += 1;
            }
            '+' if i == 0 => plus = true,
            ' ' | '-' | '(' | ')' | '.' | '\u{a0}' => {}
            other => {
                return Err(format!(
                    "unexpected character {other:?} in phone number {}",
                    crate::redact::mask_phone(trimmed)
                ));
            }
        }
    }
    let all = digits.as_bytes();
    if all.is_empty() {
        return Err(format!("no digits in phone number {trimmed:?}"));
    }
    let international = if plus { Some(all) } else { all.strip_prefix(b"00") };
    let national: &[u8] = match international {
        Some(rest) if rest.starts_with(b"86") => {
            let nsn = &rest[2..];
            // "+86 0451 …" is a common mistake: drop the trunk 0.
            nsn.strip_prefix(b"0").unwrap_or(nsn)
        }
        Some(rest) => {
            for len in 1..=3.min(rest.len()) {
                let code = rest[..len].iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
                if calling_code_known(code) {
                    if rest.len() - len < 4 {
                        return Err(format!("too short for a +{code} number"));
                    }
                    return Ok(Parsed::Foreign { calling_code: code });
                }
            }
            return Err(format!(
                "unknown country calling code in {}",
                crate::redact::mask_phone(trimmed)
            ));
        }
        None => all.strip_prefix(b"0").unwrap_or(all),
    };
    let mut nsn = Digits { buf: [0; 20], len: national.len() as u8 };
    nsn.buf[..national.len()].copy_from_slice(national);
    match national {
        [b'1', second, ..] if (b'3'..=b'9').contains(second) => {
            if national.len() != 11 {
                return Err(format!(
                    "a Chinese mobile number has 11 digits, this has {}",
                    national.len()
                ));
            }
            Ok(Parsed::China { nsn, mobile: true })
        }
        [b'1', b'0', ..] | [b'2'..=b'9', ..] => {
            if !(9..=12).contains(&national.len()) {
                return Err(format!(
                    "a Chinese landline (area code + local number) has 9 to 12 digits without the leading 0, this has {}",
                    national.len()
                ));
            }
            Ok(Parsed::China { nsn, mobile: false })
        }
        _ => Err(format!(
            "{} is neither a Chinese mobile (1[3-9]…) nor a landline (0 + area code) number",
            crate::redact::mask_phone(trimmed)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(code: u16) -> bool {
        matches!(code, 1 | 44 | 81 | 852 | 853 | 886)
    }

    #[test]
    fn forms_of_one_number_agree() {
        let expected = parse("13904511234", known).unwrap();
        for form in ["+86 139 0451 1234", "0086-139-0451-1234", "+8613904511234", " 139-0451-1234 "]
        {
            assert_eq!(parse(form, known).unwrap(), expected, "{form}");
        }
        assert_eq!(parse("+44 20 7946 0958", known).unwrap(), Parsed::Foreign { calling_code: 44 });
        assert_eq!(parse("+852 2345 6789", known).unwrap(), Parsed::Foreign { calling_code: 852 });
    }

    #[test]
    fn bad_numbers_have_reasons() {
        for (input, needle) in [
            ("", "empty"),
            ("abc", "unexpected character"),
            ("1390451", "11 digits"),
            ("139045112345", "11 digits"),
            ("+999 1234567", "unknown country calling code"),
            ("0451-12", "9 to 12 digits"),
            ("12345678901", "neither"),
        ] {
            let error = parse(input, known).unwrap_err();
            assert!(error.contains(needle), "{input}: {error}");
        }
    }
}
