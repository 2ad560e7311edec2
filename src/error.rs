//! Errors: one type, [`Error`], with a `#[non_exhaustive]` [`ErrorKind`], and [`Result`].
//!
//! Every message names what went wrong in the terms of the call that failed: the rank that saw it, the peer, the
//! tag, the sizes and the expected type, as far as they apply. `Display` gives one line, e.g.
//! `rank 2: recv_buf from rank 0 (tag 7): message of 10 elements of f64 does not fit a buffer of 4`.
//!
//! Errors are for conditions a caller can cause and handle. A rank that returns an [`Error`] out of `main` ends the
//! whole job through the failure policy (see [`crate::runtime`]), so a failing rank never leaves its peers blocked.
//!
//! Not covered yet: error classes for MPI-level failures beyond the code and its message (there is no fault
//! tolerance in Open MPI 4.1's default error model to build on).

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// The result type of every fallible spmd operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] describes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// MPI was initialised already in this process; it can be initialised once per process.
    AlreadyInitialized,
    /// The MPI library granted a lower thread level than the one requested.
    ThreadLevel,
    /// A rank outside the communicator (as destination, source or root).
    InvalidRank,
    /// A tag outside `0..=tag_ub`.
    InvalidTag,
    /// An incoming message is larger than the receive buffer.
    Truncated,
    /// Sizes or counts that do not agree: item counts, buffer lengths, shapes.
    SizeMismatch,
    /// An operation that needs a contiguous buffer got a strided one.
    NotContiguous,
    /// A value could not be serialised.
    Encode,
    /// Received bytes could not be decoded as the expected type.
    Decode,
    /// A message of one family met a receive of the other: a buffer (`*_buf`) message received as an object
    /// (`*_obj`), or the reverse. The message is consumed, so its sender does not wait.
    WrongFamily,
    /// A non-blocking operation was cancelled before it completed.
    Cancelled,
    /// An argument outside its domain that fits none of the other kinds.
    InvalidArgument,
    /// An MPI call returned an error code.
    Mpi,
    /// An I/O error of the program (for `?` on `std::io::Error` in an spmd `main`).
    Io,
    /// An error raised by the program itself (from a `String`, `&str` or boxed error).
    Other,
}

/// Number of `Error` values alive in this process; the failure policy uses it to tell a `main` that returns an
/// error from one that ends normally.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The world rank of this process while MPI runs (-1 otherwise), recorded in every error.
static WORLD_RANK: AtomicI64 = AtomicI64::new(-1);

/// What the runtime wants to hear from errors: when the last live one is dropped, and when one is printed with
/// `Debug` (as `main` does with the error it returns). Set by the runtime, so that this module depends on nothing.
pub(crate) struct Hooks {
    pub(crate) last_dropped: fn(&str),
    pub(crate) reported: fn(),
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Installs the runtime's hooks (once per process).
pub(crate) fn set_hooks(hooks: Hooks) {
    let _ = HOOKS.set(hooks);
}

/// Records the world rank for errors made from now on (`None` after MPI ends).
pub(crate) fn set_world_rank(rank: Option<usize>) {
    WORLD_RANK.store(rank.map_or(-1, |r| r as i64), Ordering::SeqCst);
}

/// The world rank of this process while MPI runs.
pub(crate) fn world_rank() -> Option<usize> {
    let r = WORLD_RANK.load(Ordering::Relaxed);
    (r >= 0).then_some(r as usize)
}

/// The error type of spmd: a kind, the rank that raised it and a one-line message with context.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    rank: Option<usize>,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a message; the calling rank (of the world communicator) is recorded when MPI is
    /// running.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Error {
            inner: Box::new(Inner {
                kind,
                rank: world_rank(),
                message: message.into(),
                source: None,
            }),
        }
    }

    /// Attaches the underlying cause, reported by [`std::error::Error::source`].
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The world rank that raised the error, when MPI was running.
    pub fn rank(&self) -> Option<usize> {
        self.inner.rank
    }

    /// The message without the rank prefix.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// How many `Error` values are alive in this process.
    pub(crate) fn live() -> usize {
        LIVE.load(Ordering::SeqCst)
    }
}

impl Clone for Error {
    fn clone(&self) -> Self {
        let mut e = Error::new(self.inner.kind, self.inner.message.clone());
        e.inner.rank = self.inner.rank;
        if let Some(s) = &self.inner.source {
            e.inner.message = format!("{}: {}", e.inner.message, s);
        }
        e
    }
}

impl Drop for Error {
    fn drop(&mut self) {
        let before = LIVE.fetch_sub(1, Ordering::SeqCst);
        if before == 1
            && let Some(h) = HOOKS.get()
        {
            (h.last_dropped)(&self.to_string());
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = self.inner.rank {
            write!(f, "rank {r}: ")?;
        }
        f.write_str(&self.inner.message)?;
        if let Some(s) = &self.inner.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

/// `Debug` prints the same line as `Display`, so that `fn main() -> spmd::Result<()>` reports a readable line.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = HOOKS.get() {
            (h.reported)();
        }
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, "I/O error").with_source(e)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(ErrorKind::Other, message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(ErrorKind::Other, message)
    }
}

impl From<Box<dyn std::error::Error + Send + Sync + 'static>> for Error {
    fn from(e: Box<dyn std::error::Error + Send + Sync + 'static>) -> Self {
        Error::new(ErrorKind::Other, e.to_string())
    }
}

/// Shorthand used across the crate: `Err(Error::new(kind, msg))`.
pub(crate) fn fail<T>(kind: ErrorKind, message: impl Into<String>) -> Result<T> {
    Err(Error::new(kind, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_message_and_source() {
        let e = Error::new(ErrorKind::Io, "reading input").with_source(std::io::Error::other("disk gone"));
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.to_string(), "reading input: disk gone");
        assert_eq!(format!("{e:?}"), "reading input: disk gone");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn conversions_keep_text() {
        let e: Error = "bad input".into();
        assert_eq!(e.kind(), ErrorKind::Other);
        assert_eq!(e.message(), "bad input");
        let c = e.clone();
        assert_eq!(c.to_string(), e.to_string());
    }
}
