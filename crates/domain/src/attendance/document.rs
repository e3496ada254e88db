//! The certificate document: one self-contained HTML page (no external assets), every
//! user-supplied string HTML-escaped.

use chrono::{DateTime, Utc};

use super::values::{CertificateId, VerificationCode};

/// What a certificate document shows.
#[derive(Debug, Clone, Copy)]
pub struct DocumentContent<'a> {
    /// The certificate's id.
    pub certificate_id: CertificateId,
    /// The event's title.
    pub event_title: &'a str,
    /// The participant's display name.
    pub participant_name: &'a str,
    /// Start of the event.
    pub starts_at: DateTime<Utc>,
    /// End of the event.
    pub ends_at: DateTime<Utc>,
    /// When the certificate is issued.
    pub issued_at: DateTime<Utc>,
    /// The public verification code.
    pub verification_code: &'a VerificationCode,
}

/// Escapes `&`, `<`, `>`, `"` and `'` for HTML text and attribute values.
pub fn escape_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The document for `content`: the same content always renders the same bytes.
pub fn render(content: &DocumentContent<'_>) -> String {
    let title = escape_html(content.event_title);
    let name = escape_html(content.participant_name);
    let code = escape_html(content.verification_code.as_str());
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Certificate of attendance: {title}</title>
<style>
body {{ font-family: Georgia, serif; margin: 0; background: #f4f1ea; }}
main {{ max-width: 42rem; margin: 3rem auto; padding: 3rem; background: #fff; border: 6px double #6b5b3e; text-align: center; }}
h1 {{ font-size: 2rem; letter-spacing: .05em; }}
.name {{ font-size: 1.8rem; font-weight: bold; margin: 1.5rem 0; }}
.meta {{ font-family: monospace; font-size: .85rem; color: #555; margin-top: 2rem; }}
</style>
</head>
<body>
<main>
<h1>Certificate of attendance</h1>
<p>This certifies that</p>
<p class="name">{name}</p>
<p>attended</p>
<p class="event"><strong>{title}</strong></p>
<p>from {starts} to {ends}</p>
<p>Issued {issued}</p>
<div class="meta">
<p>Certificate {id}</p>
<p>Verification code <code>{code}</code></p>
</div>
</main>
</body>
</html>
"#,
        starts = date(content.starts_at),
        ends = date(content.ends_at),
        issued = date(content.issued_at),
        id = content.certificate_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_supplied_strings_are_escaped() {
        let code = VerificationCode::from_stored("abc".into());
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let html = render(&DocumentContent {
            certificate_id: CertificateId::new(),
            event_title: "<script>alert('x')</script> & co",
            participant_name: "Ann \"<b>\"",
            starts_at: at,
            ends_at: at,
            issued_at: at,
            verification_code: &code,
        });
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co"));
        assert!(html.contains("Ann &quot;&lt;b&gt;&quot;"));
        assert!(html.contains("2027-01-15 08:00 UTC"));
        assert!(
            !html.contains("src=") && !html.contains("href="),
            "no external assets"
        );
    }

    #[test]
    fn rendering_is_deterministic() {
        let code = VerificationCode::from_stored("abc".into());
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let content = DocumentContent {
            certificate_id: CertificateId::new(),
            event_title: "t",
            participant_name: "n",
            starts_at: at,
            ends_at: at,
            issued_at: at,
            verification_code: &code,
        };
        assert_eq!(render(&content), render(&content));
    }
}
