//! Masked views of personal data, for roles that may only glimpse it (organizers).
//!
//! Every rule works on Unicode scalar values (`char`s), never bytes, so no multi-byte character
//! is ever cut. Fixed-width masks hide the length of the hidden part as well as its content.

use super::PiiField;

/// What a value that is too short to show any part of is replaced with (five `•`).
pub const FULL_MASK: &str = "•••••";

/// Fully masked date of birth.
const DATE_MASK: &str = "••••-••-••";

/// Masks `plaintext` of `field` for display. Leading and trailing blanks are ignored; a blank
/// value stays empty.
///
/// | field | rule | example |
/// |---|---|---|
/// | phone | first 3 and last 3 characters around [`FULL_MASK`], if at least 10 characters; else [`FULL_MASK`] | `+27821234321` → `+27•••••321` |
/// | address | first word (trailing `,`/`;` dropped) then ` •••`, if there is a second word; else [`FULL_MASK`] | `12 Long Street, Cape Town` → `12 •••` |
/// | date of birth | day of month only, if `YYYY-MM-DD`; else `••••-••-••` | `1990-04-15` → `••••-••-15` |
/// | national id | [`FULL_MASK`] then the last 4 characters, if at least 8 characters; else [`FULL_MASK`] | `8001015009087` → `•••••9087` |
///
/// The thresholds keep at least 4 characters hidden, so a short value is never nearly shown.
/// The date keeps only the day: it reveals neither the age nor the birthday.
pub fn mask(field: PiiField, plaintext: &str) -> String {
    let value = plaintext.trim();
    if value.is_empty() {
        return String::new();
    }
    match field {
        PiiField::Phone => keep_ends(value, 3, 3, 10),
        PiiField::NationalId => keep_ends(value, 0, 4, 8),
        PiiField::Address => mask_address(value),
        PiiField::DateOfBirth => mask_date(value),
    }
}

/// `head` first and `tail` last characters around [`FULL_MASK`], if `value` has at least
/// `min_len` characters; else [`FULL_MASK`].
fn keep_ends(value: &str, head: usize, tail: usize, min_len: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < min_len {
        return FULL_MASK.to_owned();
    }
    let mut masked: String = chars.iter().take(head).collect();
    masked.push_str(FULL_MASK);
    masked.extend(chars.iter().skip(chars.len() - tail));
    masked
}

fn mask_address(value: &str) -> String {
    let mut words = value.split_whitespace();
    let first = words
        .next()
        .unwrap_or_default()
        .trim_end_matches([',', ';']);
    if first.is_empty() || words.next().is_none() {
        return FULL_MASK.to_owned();
    }
    format!("{first} •••")
}

fn mask_date(value: &str) -> String {
    let bytes = value.as_bytes();
    let iso = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    match value.get(8..) {
        Some(day) if iso => format!("••••-••-{day}"),
        _ => DATE_MASK.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_keeps_first_and_last_three() {
        assert_eq!(mask(PiiField::Phone, "+27821234321"), "+27•••••321");
        assert_eq!(mask(PiiField::Phone, "0821234321"), "082•••••321");
        // The mask is fixed-width: the length is hidden too.
        assert_eq!(mask(PiiField::Phone, "+442079460000123"), "+44•••••123");
        assert_eq!(mask(PiiField::Phone, " +27821234321\n"), "+27•••••321");
    }

    #[test]
    fn short_phones_are_fully_masked() {
        assert_eq!(mask(PiiField::Phone, "123456789"), FULL_MASK);
        assert_eq!(mask(PiiField::Phone, "1"), FULL_MASK);
        assert_eq!(mask(PiiField::Phone, ""), "");
        assert_eq!(mask(PiiField::Phone, "   "), "");
    }

    #[test]
    fn address_keeps_the_first_word() {
        assert_eq!(
            mask(PiiField::Address, "12 Long Street, Cape Town"),
            "12 •••"
        );
        assert_eq!(mask(PiiField::Address, "Flat,  4 Main Road"), "Flat •••");
        assert_eq!(mask(PiiField::Address, "Nowhere"), FULL_MASK);
        assert_eq!(mask(PiiField::Address, ", Main Road"), FULL_MASK);
    }

    #[test]
    fn date_of_birth_keeps_the_day_only() {
        assert_eq!(mask(PiiField::DateOfBirth, "1990-04-15"), "••••-••-15");
        assert_eq!(mask(PiiField::DateOfBirth, "15/04/1990"), DATE_MASK);
        assert_eq!(mask(PiiField::DateOfBirth, "1990-4-15"), DATE_MASK);
        assert_eq!(mask(PiiField::DateOfBirth, "1990-04-1x"), DATE_MASK);
    }

    #[test]
    fn national_id_keeps_the_last_four() {
        assert_eq!(mask(PiiField::NationalId, "8001015009087"), "•••••9087");
        assert_eq!(mask(PiiField::NationalId, "AB123456"), "•••••3456");
        assert_eq!(mask(PiiField::NationalId, "1234567"), FULL_MASK);
    }

    #[test]
    fn masks_count_characters_not_bytes() {
        // Arabic-Indic digits are two bytes each.
        assert_eq!(mask(PiiField::Phone, "+٢٧٨٢١٢٣٤٣٢١"), "+٢٧•••••٣٢١");
        assert_eq!(mask(PiiField::Phone, "٢٧٨٢١٢٣٤٣"), FULL_MASK);
        assert_eq!(mask(PiiField::Address, "Straße 5, Köln"), "Straße •••");
        assert_eq!(mask(PiiField::Address, "東京都 千代田区"), "東京都 •••");
        assert_eq!(mask(PiiField::NationalId, "ÅÄÖ-1234-ü€😀"), "•••••-ü€😀");
        assert_eq!(mask(PiiField::DateOfBirth, "١٩٩٠-٠٤-١٥"), DATE_MASK);
        assert_eq!(mask(PiiField::DateOfBirth, "1990-04-1٥"), DATE_MASK);
    }
}
