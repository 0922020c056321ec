//! Configuration errors: each names the file, and the line and key where known.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}\nhint: pass another file with -c, or create it from example-config.yaml", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is empty or only `null` (BUG-1).
    #[error("config file {} is empty: it needs at least a `settings:` mapping with `root:`", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The YAML parser or a typed value rejected the text.
    #[error("{}: {message}", Where { path, line: *line })]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line, where the parser knows it.
        line: Option<u64>,
        /// The parser's message.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{}: `{key}`: {message}", Where { path, line: *line })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line, where known.
        line: Option<u64>,
        /// The key path, e.g. `rsync.host1.example.org.alias`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Formats `file` or `file, line N`.
struct Where<'a> {
    path: &'a PathBuf,
    line: Option<u64>,
}

impl fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}, line {line}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// The parser's message without its rendered source snippet (we print our own location).
pub(crate) fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or(message).trim();
    // serde-saphyr writes "error: line N column M: ..." or "... at line N column M"; the
    // location is reported separately.
    line = line.strip_prefix("error: ").unwrap_or(line);
    if let Some(rest) = line.strip_prefix("line ")
        && let Some((_, msg)) = rest.split_once(": ")
    {
        line = msg;
    }
    match line.find(" at line ") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}

/// The mapping key written on 1-based `line` of `text` (`  rsync-workers: 0` → `rsync-workers`),
/// so that a parser message about a value can name its key.
pub(crate) fn key_on_line(text: &str, line: u64) -> Option<String> {
    let source = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let content = source.trim_start().trim_start_matches("- ");
    let (key, _) = content.split_once(':')?;
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    (!key.is_empty() && !key.starts_with('#')).then(|| key.to_string())
}

/// The parser's `message`, prefixed with the key it is about and with a hint for the messages
/// that do not say what to do.
pub(crate) fn explain(message: &str, key: Option<String>) -> String {
    let hint = if message.contains("expected mapping start") {
        " (this key needs a mapping of options under it; is it missing, or written as a list or a \
         single value?)"
    } else if message.contains("expected sequence start") {
        " (this key needs a list, e.g. [/, /boot])"
    } else if message.contains("nonzero") {
        " (it must be at least 1)"
    } else {
        ""
    };
    match key {
        Some(key) => format!("`{key}`: {message}{hint}"),
        None => format!("{message}{hint}"),
    }
}
