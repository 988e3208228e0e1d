//! Colour on stderr: only on a terminal, never when `NO_COLOR` is set (no-color.org) or the
//! terminal is `dumb`.

use std::io::IsTerminal;

use lro_core::StatusKind;

/// Paints words for stderr, or leaves them plain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paint {
    enabled: bool,
}

impl Paint {
    /// Colour if stderr is a terminal and nothing in the environment says no.
    pub(crate) fn stderr() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Paint { enabled: std::io::stderr().is_terminal() && !no_color && !dumb }
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.enabled { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    /// Green.
    pub(crate) fn good(self, text: &str) -> String {
        self.wrap("32", text)
    }

    /// Red.
    pub(crate) fn bad(self, text: &str) -> String {
        self.wrap("31", text)
    }

    /// Dimmed.
    pub(crate) fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }

    /// A status word in the colour of its kind (running ones plain).
    pub(crate) fn status(self, text: &str, kind: StatusKind) -> String {
        match kind {
            StatusKind::Succeeded => self.good(text),
            StatusKind::Failed | StatusKind::Canceled => self.bad(text),
            _ => text.to_owned(),
        }
    }
}

/// `text` from the service, safe on a terminal: control characters (escape sequences that
/// could move the cursor, retitle the window or hide text) become `�`, and it is cut to 200
/// characters.
pub(crate) fn printable(text: &str) -> String {
    text.chars().take(200).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

/// As [`printable`], for messages: not cut, newlines kept.
pub(crate) fn printable_long(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\n' { '\u{fffd}' } else { c }).collect()
}

/// `1 poll`, `2 polls`.
pub(crate) fn polls(n: u64) -> String {
    if n == 1 { "1 poll".to_owned() } else { format!("{n} polls") }
}

/// A duration for people: `850ms`, `2.3s`, `1m 05s`, `2h 03m`.
pub(crate) fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn service_words_cannot_drive_the_terminal() {
        assert_eq!(printable("Running"), "Running");
        assert_eq!(printable("Ru\x1b]0;pwned\x07n"), "Ru\u{fffd}]0;pwned\u{fffd}n");
        assert_eq!(printable(&"x".repeat(300)).len(), 200);
    }

    #[test]
    fn one_poll_is_singular() {
        assert_eq!(polls(1), "1 poll");
        assert_eq!(polls(0), "0 polls");
        assert_eq!(polls(2), "2 polls");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(2340)), "2.3s");
        assert_eq!(duration(Duration::from_secs(65)), "1m 05s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h 03m");
    }

    #[test]
    fn plain_paint_adds_no_escape_codes() {
        let paint = Paint { enabled: false };
        assert_eq!(paint.status("Failed", StatusKind::Failed), "Failed");
        let paint = Paint { enabled: true };
        assert_eq!(paint.good("ok"), "\x1b[32mok\x1b[0m");
    }
}
