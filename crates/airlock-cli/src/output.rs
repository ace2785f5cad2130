//! Printing: JSON for machines, plain text for people; and the one place that writes to
//! stdout and stderr.
//!
//! Every line the CLI prints goes through [`line`] or [`error_line`] (the `outln!` and
//! `errln!` macros), never `println!`, which panics when its reader has gone: `airlock run
//! … | head -1` closes the pipe after one line, and a panic there would abandon the run
//! this process drives (it would wait out its lease and be dead-lettered minutes later).
//! Here a closed pipe means "the reader left": that line and every later one on the same
//! stream are dropped, quietly, and the command goes on to its end and exits with its own
//! code. Any other failure to write is said once on stderr, then treated the same way.
//! `lib.rs` denies the print macros so that no command writes around this module.

use serde::Serialize;
use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether stdout can no longer be written (its reader left, or it failed).
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// The same for stderr.
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Prints one line on stdout, as `println!` would, unless stdout is gone.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// Prints one line on stderr, as `eprintln!` would, unless stderr is gone.
#[macro_export]
macro_rules! errln {
    () => {
        $crate::output::error_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::error_line(format_args!($($arg)*))
    };
}

/// One line on stdout. See the module's documentation for what a closed pipe does.
pub fn line(text: fmt::Arguments<'_>) {
    let stdout = std::io::stdout();
    let failure = write_line(&mut stdout.lock(), text, &STDOUT_GONE);
    if let Some(error) = failure {
        error_line(format_args!(
            "note: cannot write to stdout ({error}); the rest of the output is dropped"
        ));
    }
}

/// One line on stderr. A failure here has nowhere left to be said: it is dropped.
pub fn error_line(text: fmt::Arguments<'_>) {
    let stderr = std::io::stderr();
    let _ = write_line(&mut stderr.lock(), text, &STDERR_GONE);
}

/// Writes `text` and a newline to `out` unless `gone` is set, then flushes (so that a run's
/// journal appears line by line, and a closed pipe is seen at this line, not at exit).
/// On a failure, sets `gone`; answers the failure when it is worth saying (not a reader
/// that left).
fn write_line(
    out: &mut impl Write,
    text: fmt::Arguments<'_>,
    gone: &AtomicBool,
) -> Option<std::io::Error> {
    if gone.load(Ordering::Relaxed) {
        return None;
    }
    let written = out
        .write_fmt(text)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => None,
        Err(error) => {
            // Only the first failure is reported: after it, nothing is written at all.
            if gone.swap(true, Ordering::Relaxed) || error.kind() == ErrorKind::BrokenPipe {
                None
            } else {
                Some(error)
            }
        }
    }
}

/// A value as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => line(format_args!("{text}")),
        Err(error) => error_line(format_args!("error: cannot encode output: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader left after `accepts` writes.
    struct ClosedAfter {
        accepts: usize,
        written: Vec<u8>,
    }

    impl Write for ClosedAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.accepts == 0 {
                return Err(std::io::Error::from(ErrorKind::BrokenPipe));
            }
            self.accepts -= 1;
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_left_ends_the_output_quietly() {
        let gone = AtomicBool::new(false);
        let mut out = ClosedAfter {
            accepts: 2,
            written: Vec::new(),
        };
        assert!(write_line(&mut out, format_args!("first"), &gone).is_none());
        assert!(
            write_line(&mut out, format_args!("second"), &gone).is_none(),
            "a closed pipe is not an error to report"
        );
        assert!(gone.load(Ordering::Relaxed));
        out.accepts = 10;
        assert!(write_line(&mut out, format_args!("third"), &gone).is_none());
        assert_eq!(
            String::from_utf8_lossy(&out.written),
            "first\n",
            "nothing is written once the reader left"
        );
    }

    #[test]
    fn another_failure_is_reported_once() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("no space left"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gone = AtomicBool::new(false);
        assert!(write_line(&mut Full, format_args!("a"), &gone).is_some());
        assert!(write_line(&mut Full, format_args!("b"), &gone).is_none());
    }
}
