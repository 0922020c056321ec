//! The failure excerpt: the tail of a unit's `.err` log, cleaned up for the failure mail
//! (core-rsync-coda.md §4.5).
//!
//! [`excerpt`] is the pure algorithm over raw bytes; [`from_log`] reads the window from a file.
//! Unlike the original, the bytes are decoded lossily, so a window that starts in the middle of
//! a UTF-8 character (or a log holding binary junk) can never make the excerpt fail (BUG-9).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// How many bytes at the end of the log the excerpt looks at.
pub const WINDOW_BYTES: u64 = 8192;
/// The excerpt keeps at most this many characters (the last ones).
pub const MAX_CHARS: usize = 4096;
/// The excerpt keeps at most this many lines (the last ones).
pub const MAX_LINES: usize = 10;
/// Marks an excerpt that does not start at the beginning of the log.
pub const ELISION: &str = "[...]";
/// Each excerpt line is indented by this.
pub const INDENT: &str = "   ";

const TRACEBACK: &str = "Traceback (most recent call last):";

/// Reads the last [`WINDOW_BYTES`] of `path` and returns its [`excerpt`].
///
/// Errors: the log cannot be opened or read.
pub fn from_log(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let start = size.saturating_sub(WINDOW_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut window = Vec::with_capacity(WINDOW_BYTES as usize);
    file.take(WINDOW_BYTES).read_to_end(&mut window)?;
    Ok(excerpt(&window, start > 0))
}

/// Builds the excerpt of `window`, the tail of a log; `truncated` says the window does not start
/// at the beginning of the log. Returns the lines indented by three spaces and joined by `\n`
/// (no final newline); an empty string when nothing is left.
///
/// Steps (§4.5): decode lossily and trim; drop Python tracebacks but keep their final exception
/// line; keep the last [`MAX_CHARS`] characters, then the last [`MAX_LINES`] lines; put
/// [`ELISION`] first when anything was cut.
pub fn excerpt(window: &[u8], mut truncated: bool) -> String {
    let window = if truncated {
        skip_partial_char(window)
    } else {
        window
    };
    let decoded = String::from_utf8_lossy(window);
    let kept = strip_tracebacks(decoded.trim()).join("\n");

    let text = match kept.char_indices().rev().nth(MAX_CHARS - 1) {
        Some((index, _)) if index > 0 => {
            truncated = true;
            &kept[index..]
        }
        _ => kept.as_str(),
    };

    let mut lines: Vec<&str> = if text.is_empty() {
        Vec::new()
    } else {
        text.lines().collect()
    };
    if lines.len() > MAX_LINES {
        lines.drain(..lines.len() - MAX_LINES);
        truncated = true;
    }
    if truncated {
        lines.insert(0, ELISION);
    }
    lines
        .iter()
        .map(|line| format!("{INDENT}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Drops the UTF-8 continuation bytes a window may start with when it begins inside a
/// character, so the excerpt does not open with a replacement character.
fn skip_partial_char(window: &[u8]) -> &[u8] {
    let partial = window
        .iter()
        .take(3)
        .take_while(|&&b| b & 0xC0 == 0x80)
        .count();
    &window[partial..]
}

/// Keeps every line except Python tracebacks: from a `Traceback (most recent call last):` line
/// up to, but not including, the next line that does not start with a space (the exception).
fn strip_tracebacks(text: &str) -> Vec<&str> {
    let mut accepting = true;
    let mut kept = Vec::new();
    for line in text.lines() {
        if accepting {
            if line == TRACEBACK {
                accepting = false;
            } else {
                kept.push(line);
            }
        } else if !line.starts_with(' ') {
            kept.push(line);
            accepting = true;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn short_logs_are_indented_and_trimmed() {
        let got = excerpt(
            b"\n\n  rsync: connection refused\n# Task exited with status 1\n\n",
            false,
        );
        assert_eq!(
            got,
            "   rsync: connection refused\n   # Task exited with status 1"
        );
    }

    #[test]
    fn an_empty_log_gives_an_empty_excerpt() {
        assert_eq!(excerpt(b"", false), "");
        assert_eq!(excerpt(b" \n\t\n", false), "");
    }

    #[test]
    fn tracebacks_are_dropped_but_their_exception_line_is_kept() {
        let log = "before\n\
                   Traceback (most recent call last):\n  \
                   File \"x.py\", line 1, in <module>\n    \
                   raise ValueError('boom')\n\
                   ValueError: boom\n\
                   after";
        assert_eq!(
            excerpt(log.as_bytes(), false),
            "   before\n   ValueError: boom\n   after"
        );
    }

    #[test]
    fn a_traceback_without_exception_line_drops_to_the_end() {
        let log = "first\nTraceback (most recent call last):\n  File \"x\"\n  more";
        assert_eq!(excerpt(log.as_bytes(), false), "   first");
    }

    #[test]
    fn two_tracebacks_are_both_stripped() {
        let log = "Traceback (most recent call last):\n  a\nKeyError: 1\n\
                   Traceback (most recent call last):\n  b\nOSError: 2";
        assert_eq!(
            excerpt(log.as_bytes(), false),
            "   KeyError: 1\n   OSError: 2"
        );
    }

    #[test]
    fn more_than_ten_lines_keep_the_last_ten_after_an_elision_mark() {
        let log: String = (1..=15).map(|i| format!("line {i}\n")).collect();
        let got = excerpt(log.as_bytes(), false);
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[0], "   [...]");
        assert_eq!(lines[1], "   line 6");
        assert_eq!(lines[10], "   line 15");
    }

    #[test]
    fn exactly_ten_lines_are_not_marked() {
        let log: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        let got = excerpt(log.as_bytes(), false);
        assert_eq!(got.lines().count(), 10);
        assert!(!got.contains(ELISION));
    }

    #[test]
    fn long_text_keeps_the_last_4096_characters() {
        // Multi-byte characters: the cap counts characters, not bytes.
        let log = format!("start{}end", "é".repeat(5000));
        let got = excerpt(log.as_bytes(), false);
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(
            lines,
            vec![
                "   [...]".to_string(),
                format!("   {}end", "é".repeat(4093))
            ]
        );
        assert_eq!(lines[1].chars().count(), INDENT.len() + MAX_CHARS);
    }

    #[test]
    fn exactly_4096_characters_are_not_marked() {
        let log = "x".repeat(MAX_CHARS);
        assert_eq!(excerpt(log.as_bytes(), false), format!("{INDENT}{log}"));
    }

    #[test]
    fn a_truncated_window_is_marked() {
        assert_eq!(excerpt(b"tail line", true), "   [...]\n   tail line");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let got = excerpt(b"bad \xff\xfe bytes\nok", false);
        assert_eq!(got, "   bad \u{FFFD}\u{FFFD} bytes\n   ok");
    }

    #[test]
    fn a_window_starting_inside_a_character_skips_its_tail_bytes() {
        // "é" is C3 A9; a window starting at A9 must not show a replacement character.
        assert_eq!(excerpt(b"\xa9abc", true), "   [...]\n   abc");
        // Not truncated: the byte is kept (and replaced), as it is really in the log.
        assert_eq!(excerpt(b"\xa9abc", false), "   \u{FFFD}abc");
    }

    #[test]
    fn from_log_reads_only_the_last_window_and_copes_with_a_split_character() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20240101.err");
        let mut file = File::create(&path).unwrap();
        // 4-byte characters, placed so that the window boundary falls inside one of them:
        // size = 11 + 12000 + 13 = 12024, the window starts at 3832, which is 3821 bytes
        // into the emoji run (3821 % 4 == 1): it opens with three continuation bytes.
        file.write_all(b"EARLY LINE\n").unwrap();
        file.write_all("\u{1F600}".repeat(3000).as_bytes()).unwrap();
        file.write_all(b"z\nlast line!\n").unwrap();
        drop(file);

        let got = from_log(&path).unwrap();
        assert!(!got.contains("EARLY"), "{got}");
        assert!(!got.contains('\u{FFFD}'), "{got}");
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines[0], "   [...]");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], format!("{INDENT}{}z", "\u{1F600}".repeat(2044)));
        assert_eq!(lines[2], "   last line!");
    }

    #[test]
    fn from_log_of_a_small_file_is_not_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.err");
        std::fs::write(&path, "only line\n").unwrap();
        assert_eq!(from_log(&path).unwrap(), "   only line");
    }
}
