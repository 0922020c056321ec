//! [`Secret`]: a string that never shows itself in `Debug` or `Display`, so a token in the config
//! cannot reach a log line or an error message by accident.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A secret value (an API token). Read it with [`Secret::expose`], only where it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself: pass it to the one place that sends it, never to a formatter.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        if value.trim().is_empty() {
            return Err(serde::de::Error::custom("is empty"));
        }
        Ok(Secret(value.trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format_themselves() {
        let s = Secret::new("ghp_supersecret");
        assert!(!format!("{s:?} {s}").contains("supersecret"));
        assert_eq!(s.expose(), "ghp_supersecret");
    }
}
