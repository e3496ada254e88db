//! The log redaction layer: a writer that scrubs secrets from every log line before it leaves
//! the process.
//!
//! keel never logs bodies, headers or `Secret<T>` values on purpose; this layer is the second
//! line of defence for the day a future log statement gets it wrong. It masks, in pretty and
//! JSON lines alike:
//! - JWTs (`eyJ…` three-part tokens) and `Bearer` credentials;
//! - the values of fields whose name says they are secret or personal (`password`, `token`,
//!   `secret`, `authorization`, `phone`, `address`, `date_of_birth`, `national_id`), written as
//!   `name=value` or `"name":"value"`;
//! - byte lists (`[114, 111, 111, 116]`, four or more numbers up to 255): the `Debug` form in
//!   which database drivers log bound query parameters (`tokio_postgres` at `debug` printed every
//!   email and password hash a query bound this way).

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// What replaces a scrubbed value.
pub const REDACTED: &str = "[redacted]";

/// Field names whose values never reach the logs (matched as substrings, case-insensitively).
const SENSITIVE_NAMES: &[&str] = &[
    "password",
    "token",
    "secret",
    "authorization",
    "phone",
    "address",
    "date_of_birth",
    "national_id",
];

/// Scrubs one formatted log line.
pub fn redact(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < line.len() {
        if let Some(end) = jwt_at(bytes, i) {
            out.push_str(REDACTED);
            i = end;
            continue;
        }
        if let Some(end) = byte_list_at(bytes, i) {
            out.push('[');
            out.push_str(REDACTED);
            i = end;
            continue;
        }
        if line[i..].starts_with("Bearer ") {
            out.push_str("Bearer ");
            out.push_str(REDACTED);
            i = token_end(bytes, i + "Bearer ".len());
            continue;
        }
        if let Some(value_start) = sensitive_field_at(line, i) {
            out.push_str(&line[i..value_start]);
            out.push_str(REDACTED);
            i = value_end(bytes, value_start);
            continue;
        }
        let ch = line[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b'+' | b'/')
}

fn token_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_token_byte(bytes[i]) {
        i += 1;
    }
    i
}

/// A JWT starting at `i`: `eyJ` + base64url, a dot, base64url, a dot, optional base64url.
fn jwt_at(bytes: &[u8], i: usize) -> Option<usize> {
    if !bytes[i..].starts_with(b"eyJ") || (i > 0 && is_token_byte(bytes[i - 1])) {
        return None;
    }
    let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut j = i;
    let mut dots = 0;
    while j < bytes.len() && (b64(bytes[j]) || bytes[j] == b'.') {
        if bytes[j] == b'.' {
            dots += 1;
        }
        j += 1;
    }
    (dots == 2).then_some(j)
}

/// A byte list starting at `i`: `[`, at least four decimal numbers up to 255 separated by `,`
/// and optional spaces; returns where its closing `]` is (kept in the output).
fn byte_list_at(bytes: &[u8], i: usize) -> Option<usize> {
    if bytes[i] != b'[' {
        return None;
    }
    let close = i + bytes[i..].iter().position(|&b| b == b']')?;
    let inside = std::str::from_utf8(&bytes[i + 1..close]).ok()?;
    let numbers: Vec<&str> = inside.split(',').map(str::trim).collect();
    let all_bytes = numbers
        .iter()
        .all(|n| !n.is_empty() && n.len() <= 3 && n.parse::<u8>().is_ok());
    (numbers.len() >= 4 && all_bytes).then_some(close)
}

/// A sensitive field name at `i` followed by `=` or `":"`; returns where its value starts.
fn sensitive_field_at(line: &str, i: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    let quoted = bytes[i] == b'"';
    let start = if quoted { i + 1 } else { i };
    if !quoted && i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
        return None;
    }
    let mut end = start;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
    }
    if end == start {
        return None;
    }
    let name = line[start..end].to_ascii_lowercase();
    if !SENSITIVE_NAMES.iter().any(|s| name.contains(s)) {
        return None;
    }
    let rest = &line[end..];
    let separator = if quoted {
        ["\":\"", "\": \""]
            .into_iter()
            .find(|sep| rest.starts_with(sep))?
    } else {
        ["=\"", "="].into_iter().find(|sep| rest.starts_with(sep))?
    };
    Some(end + separator.len())
}

/// End of a field value: up to the closing quote (quoted) or the next space/comma/brace.
fn value_end(bytes: &[u8], start: usize) -> usize {
    let quoted = start > 0 && bytes[start - 1] == b'"';
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 2,
            b'"' if quoted => return i,
            b' ' | b',' | b'}' if !quoted => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A [`MakeWriter`] that scrubs every line written through it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStdout;

impl<'a> MakeWriter<'a> for RedactingStdout {
    type Writer = RedactingWriter<io::Stdout>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(io::stdout())
    }
}

/// Scrubs each write (tracing writes one whole formatted event per call).
#[derive(Debug)]
pub struct RedactingWriter<W>(pub W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_and_bearer_credentials_are_masked() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        assert_eq!(
            redact(&format!("got {jwt} from client")),
            "got [redacted] from client"
        );
        assert_eq!(
            redact("header Bearer abc.def-123 end"),
            "header Bearer [redacted] end"
        );
    }

    #[test]
    fn sensitive_fields_are_masked_in_both_formats() {
        assert_eq!(
            redact("login failed password=hunter2 user=x"),
            "login failed password=[redacted] user=x"
        );
        assert_eq!(
            redact(r#"{"message":"x","refresh_token":"abc\"def","status":401}"#),
            r#"{"message":"x","refresh_token":"[redacted]","status":401}"#
        );
        assert_eq!(redact(r#"phone="+27 82 123""#), r#"phone="[redacted]""#);
        assert_eq!(
            redact(r#"{"national_id": "8001015009087"}"#),
            r#"{"national_id": "[redacted]"}"#
        );
    }

    #[test]
    fn logged_query_parameters_are_masked() {
        let line = r#"executing statement s9 with parameters: [ToSqlHelper(PgTypeMetadata(Ok(InnerPgTypeMetadata { oid: 25 })), Some([114, 111, 111, 116, 64, 107])), Some([1,2,3,4])]"#;
        assert_eq!(
            redact(line),
            "executing statement s9 with parameters: [ToSqlHelper(PgTypeMetadata(Ok(InnerPgTypeMetadata { oid: 25 })), Some([[redacted]])), Some([[redacted]])]"
        );
        for kept in [
            "[]",
            "[1, 2, 3]",
            "[256, 1, 2, 3]",
            "[a, b, c, d]",
            "[1, 2, 3, 4",
        ] {
            assert_eq!(redact(kept), kept);
        }
    }

    #[test]
    fn ordinary_lines_pass_untouched() {
        let line = r#"{"level":"INFO","message":"request finished","status":200,"span":{"path":"/api/v1/users/me"}}"#;
        assert_eq!(redact(line), line);
        assert_eq!(
            redact("tokens_issued=3"),
            "tokens_issued=[redacted]",
            "names containing token count as secret"
        );
        assert_eq!(redact("ünïcode stays ✓"), "ünïcode stays ✓");
    }
}
