//! The status of an operation, as the service reports it, and how it is classified.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What a status word means for the operation: still running, or ended one of three ways.
///
/// This is the classification azure-core makes (`succeeded`, `failed` and `canceled` are
/// terminal; every other word means "keep polling").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusKind {
    /// Not finished: keep polling (`NotStarted`, `Running`, `Accepted`, unknown words, ...).
    InProgress,
    /// Finished successfully.
    Succeeded,
    /// Finished with a failure reported by the service.
    Failed,
    /// Finished because it was canceled on the service side.
    Canceled,
}

impl StatusKind {
    /// `true` for [`Succeeded`](Self::Succeeded), [`Failed`](Self::Failed) and
    /// [`Canceled`](Self::Canceled).
    pub fn is_terminal(self) -> bool {
        !matches!(self, StatusKind::InProgress)
    }

    /// `true` for [`Failed`](Self::Failed) and [`Canceled`](Self::Canceled).
    pub fn is_failure(self) -> bool {
        matches!(self, StatusKind::Failed | StatusKind::Canceled)
    }
}

/// The status of a long-running operation: the word the service sent, and what it means.
///
/// The original spelling is kept for display and continuation tokens; the
/// [`kind`](Status::kind) was decided once, by a [`StatusVocabulary`], when the status was read.
///
/// ```
/// use lro_core::{Status, StatusKind, StatusVocabulary};
///
/// let azure = StatusVocabulary::azure();
/// let status = azure.status("SUCCEEDED");
/// assert!(status.is_terminal() && status.is_success());
/// assert_eq!(status.as_str(), "SUCCEEDED");
///
/// // azure-core does not know the British spelling: the operation is still in progress.
/// assert_eq!(azure.status("Cancelled").kind(), StatusKind::InProgress);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Status {
    text: Arc<str>,
    kind: StatusKind,
}

impl Status {
    /// A status with an explicit classification (for custom polling methods).
    pub fn new(text: impl Into<Arc<str>>, kind: StatusKind) -> Self {
        Status { text: text.into(), kind }
    }

    /// `text` as a strategy returns a status word ([`Strategy::read_poll`](crate::Strategy)):
    /// the words most services send (`Running`, `Succeeded`, ...) are one shared copy, so that
    /// reading them allocates nothing.
    ///
    /// ```
    /// use lro_core::Status;
    ///
    /// assert!(std::sync::Arc::ptr_eq(&Status::word("Running"), &Status::word("Running")));
    /// assert_eq!(&*Status::word("Provisioning"), "Provisioning");
    /// ```
    pub fn word(text: &str) -> Arc<str> {
        common(text).unwrap_or_else(|| Arc::from(text))
    }

    /// The status word exactly as the service sent it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the word means.
    pub fn kind(&self) -> StatusKind {
        self.kind
    }

    /// `true` once the operation has ended (succeeded, failed or canceled).
    pub fn is_terminal(&self) -> bool {
        self.kind.is_terminal()
    }

    /// `true` if the operation ended successfully.
    pub fn is_success(&self) -> bool {
        self.kind == StatusKind::Succeeded
    }

    /// `true` if the operation ended failed or canceled.
    pub fn is_failure(&self) -> bool {
        self.kind.is_failure()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({:?}, {:?})", &*self.text, self.kind)
    }
}

/// Which status words end an operation, compared without regard to ASCII case.
///
/// [`StatusVocabulary::azure`] (the default) is exactly azure-core's: `succeeded`, `failed` and
/// `canceled`. Services that speak differently add their words:
///
/// ```
/// use lro_core::{StatusKind, StatusVocabulary};
///
/// let words = StatusVocabulary::azure()
///     .with("Cancelled", StatusKind::Canceled)
///     .with("Completed", StatusKind::Succeeded);
/// assert_eq!(words.classify("cancelled"), StatusKind::Canceled);
/// assert_eq!(words.classify("Running"), StatusKind::InProgress);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusVocabulary {
    // azure-core's words are static: the default vocabulary costs every poller nothing.
    words: Cow<'static, [(Cow<'static, str>, StatusKind)]>,
}

const AZURE_WORDS: &[(Cow<'static, str>, StatusKind)] = &[
    (Cow::Borrowed("succeeded"), StatusKind::Succeeded),
    (Cow::Borrowed("failed"), StatusKind::Failed),
    (Cow::Borrowed("canceled"), StatusKind::Canceled),
];

impl StatusVocabulary {
    /// azure-core's vocabulary: `succeeded`, `failed`, `canceled` (any case) are terminal.
    pub fn azure() -> Self {
        StatusVocabulary { words: Cow::Borrowed(AZURE_WORDS) }
    }

    /// Adds (or redefines) a word. Later definitions of the same word win.
    #[must_use]
    pub fn with(mut self, word: &str, kind: StatusKind) -> Self {
        let words = self.words.to_mut();
        words.retain(|(w, _)| !w.eq_ignore_ascii_case(word));
        words.push((Cow::Owned(word.to_owned()), kind));
        self
    }

    /// What `word` means; unknown words mean [`StatusKind::InProgress`].
    pub fn classify(&self, word: &str) -> StatusKind {
        self.words
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
            .map_or(StatusKind::InProgress, |(_, kind)| *kind)
    }

    /// A [`Status`] for `word`, classified by this vocabulary.
    pub fn status(&self, word: impl Into<Arc<str>>) -> Status {
        let text = shared(word.into());
        let kind = self.classify(&text);
        Status { text, kind }
    }
}

/// `text`, or the one shared copy of it if it is a word most services send: an idle
/// operation's status then costs no allocation of its own (a fleet holds many thousands).
fn shared(text: Arc<str>) -> Arc<str> {
    common(&text).unwrap_or(text)
}

/// The shared copy of `text`, if it is a common word.
fn common(text: &str) -> Option<Arc<str>> {
    static WORDS: std::sync::OnceLock<Vec<Arc<str>>> = std::sync::OnceLock::new();
    const COMMON: [&str; 10] = [
        "Running",
        "InProgress",
        "NotStarted",
        "Accepted",
        "Succeeded",
        "Failed",
        "Canceled",
        "Creating",
        "Updating",
        "Deleting",
    ];
    let words = WORDS.get_or_init(|| COMMON.iter().map(|w| Arc::from(*w)).collect());
    words.iter().find(|word| ***word == *text).map(Arc::clone)
}

impl Default for StatusVocabulary {
    fn default() -> Self {
        Self::azure()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_words_share_one_copy_and_others_keep_theirs() {
        let v = StatusVocabulary::azure();
        let (a, b) = (v.status("Running"), v.status(String::from("Running")));
        assert!(Arc::ptr_eq(&a.text, &b.text));
        assert_eq!(a.as_str(), "Running");
        let odd = v.status("Provisioning");
        assert_eq!(odd.as_str(), "Provisioning");
        assert_eq!(v.status("running").as_str(), "running", "the service's spelling is kept");
    }

    #[test]
    fn azure_terminal_words_match_in_any_case() {
        let v = StatusVocabulary::azure();
        for word in ["succeeded", "Succeeded", "SUCCEEDED"] {
            assert_eq!(v.classify(word), StatusKind::Succeeded);
        }
        assert_eq!(v.classify("FAILED"), StatusKind::Failed);
        assert_eq!(v.classify("Canceled"), StatusKind::Canceled);
    }

    #[test]
    fn unknown_and_british_words_are_in_progress_by_default() {
        let v = StatusVocabulary::azure();
        for word in ["Cancelled", "NotStarted", "Running", "Completed", "", "succeeded "] {
            assert_eq!(v.classify(word), StatusKind::InProgress, "{word:?}");
        }
    }

    #[test]
    fn vocabulary_can_add_and_redefine_words() {
        let v = StatusVocabulary::azure()
            .with("Cancelled", StatusKind::Canceled)
            .with("FAILED", StatusKind::InProgress);
        assert_eq!(v.classify("CANCELLED"), StatusKind::Canceled);
        assert_eq!(v.classify("failed"), StatusKind::InProgress);
    }

    #[test]
    fn status_keeps_the_service_spelling() {
        let s = StatusVocabulary::azure().status("sUcCeEdEd");
        assert_eq!(s.to_string(), "sUcCeEdEd");
        assert!(s.is_success() && s.is_terminal() && !s.is_failure());
    }
}
