//! Text log fields with every control character escaped, whatever put it
//! there (a username, a peer's bytes in an error, a path from the config):
//! a value cannot end its line and start a forged one, move the cursor or
//! hide text, so one line of turnd's log is one event. The JSON format
//! escapes by itself (RFC 8259 §7).

use std::fmt::{self, Write};

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;

/// The default field formatter (`message key=value ...`), then escaped:
/// control characters (C0, DEL, C1), line and paragraph separators and
/// bidirectional controls are written as `\n`, `\r`, `\t` or `\u{..}`.
#[derive(Debug, Default)]
pub struct EscapedFields {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut raw = String::new();
        self.inner.format_fields(Writer::new(&mut raw), fields)?;
        write_escaped(&mut writer, &raw)
    }
}

pub use crate::core::redact::needs_escape;

/// Writes `s` with the characters of [`needs_escape`] escaped.
pub fn write_escaped(out: &mut impl Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if needs_escape(c) => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn every_field_and_the_message_are_escaped() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .fmt_fields(EscapedFields::default())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("conn", peer = "a\nb");
            let _g = span.enter();
            let user = "eve\n2026-01-01T00:00:00Z  INFO allocation created user=admin";
            tracing::info!(user = %user, debug = ?"x\0y", "got \u{1b}[2J{}", "\r\u{2028}\u{202E}");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "one event, one line: {out:?}");
        assert!(out.contains("user=eve\\n2026-01-01"), "{out}");
        assert!(out.contains(r#"peer="a\nb""#), "{out}");
        // ESC is escaped by tracing-subscriber already, the rest by us.
        assert!(out.contains(r"\x1b[2J\r\u{2028}\u{202e}"), "{out}");
        assert!(!out.contains('\0') && !out.contains('\u{1b}') && !out.contains('\r'));
    }

    #[test]
    fn plain_text_is_unchanged() {
        let mut s = String::new();
        write_escaped(&mut s, "allocation created user=zoë relay=127.0.0.1:5000").unwrap();
        assert_eq!(s, "allocation created user=zoë relay=127.0.0.1:5000");
    }
}
