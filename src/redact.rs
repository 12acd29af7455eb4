//! Masking personal data for logs and terminal output. One rule for phone
//! numbers however they are spelled (`139 0451 12345`, `+86-139-0451-2345`,
//! `(139)04512345`, `0086 139…`): only the first three and the last two digits
//! stay, the rest become a fixed `****` (so the length is not shown either).
//! [`mask_phone`] masks one value known to be a phone; [`mask_phones`] masks
//! every phone-like run in free text (error messages that may quote a row).

/// A run needs this many digits to count as a phone number in free text.
const MIN_DIGITS: usize = 7;

/// One phone number fit for logs: `+86 139 0451 2345` → `+861****45`,
/// `(139)04512345` → `139****45`; fewer than seven digits → `****`.
pub fn mask_phone(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let plus = if phone.trim_start().starts_with('+') { "+" } else { "" };
    if digits.len() < MIN_DIGITS {
        return format!("{plus}****");
    }
    format!("{plus}{}****{}", &digits[..3], &digits[digits.len() - 2..])
}

/// `text` with every phone-like run masked as by [`mask_phone`]. A run starts at
/// a digit or a `+` before one, and goes on through digits and the separators
/// phones are written with (space, `-`, `.`, `(`, `)`, `/`) as long as another
/// digit follows; a run of at least seven digits is masked.
pub fn mask_phones(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i].is_ascii_digit()
            || (matches!(chars[i], '+' | '(')
                && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        if !starts {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // The run ends after its last digit that only separators precede.
        let mut end = i;
        let mut j = i;
        while j < chars.len() {
            let c = chars[j];
            if c.is_ascii_digit() {
                end = j + 1;
            } else if !(is_separator(c) || (j == i && matches!(c, '+' | '('))) {
                break;
            }
            j += 1;
        }
        let run: String = chars[i..end].iter().collect();
        if run.chars().filter(char::is_ascii_digit).count() >= MIN_DIGITS {
            out.push_str(&mask_phone(&run));
        } else {
            out.push_str(&run);
        }
        i = end;
    }
    out
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')' | '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_masks_alike() {
        for (raw, masked) in [
            ("+8613904512345", "+861****45"),
            ("+86-139-0451-2345", "+861****45"),
            ("139 0451 12345", "139****45"),
            ("(139)04512345", "139****45"),
            ("0086 139 0451 2345", "008****45"),
            ("12345", "****"),
        ] {
            assert_eq!(mask_phone(raw), masked, "{raw}");
        }
    }

    #[test]
    fn free_text_keeps_everything_but_the_phones() {
        assert_eq!(
            mask_phones("row 3: bad phone \"139 0451 12345\": expected …"),
            "row 3: bad phone \"139****45\": expected …"
        );
        assert_eq!(
            mask_phones("row 12: +86-139-0451-2345 and (139)04512345"),
            "row 12: +861****45 and 139****45"
        );
        assert_eq!(
            mask_phones("invalid type: integer `13904519876`"),
            "invalid type: integer `139****76`"
        );
        assert_eq!(mask_phones("row 12345, column 7"), "row 12345, column 7");
        assert_eq!(mask_phones("ends with a dash 12-"), "ends with a dash 12-");
    }
}
