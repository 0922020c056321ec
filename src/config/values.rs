//! Small validated value types used by the settings: each checks its range while it is
//! deserialized, so the parser's error carries the line of the bad value.

use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::time::Duration;

/// A probability in `[0, 1]`, as used by the `*-probability` settings.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Probability(f64);

impl Probability {
    /// Wraps `p`; panics outside `[0, 1]` (for constants; input goes through `Deserialize`).
    pub const fn new(p: f64) -> Self {
        assert!(p >= 0.0 && p <= 1.0);
        Probability(p)
    }

    /// The probability as a number in `[0, 1]`.
    pub fn value(self) -> f64 {
        self.0
    }

    /// Draws once: true with this probability (`p = 0` never, `p = 1` always).
    pub fn roll(self, rng: &mut (impl rand::Rng + ?Sized)) -> bool {
        use rand::RngExt;
        rng.random::<f64>() < self.0
    }
}

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = f64::deserialize(d)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(de::Error::custom(format!(
                "probability {p} is outside 0..1 (0.0166 means about once in 60 runs)"
            )));
        }
        Ok(Probability(p))
    }
}

/// A duration in whole seconds, written either as a number of seconds (`3600`) or with units
/// (`"6h"`, `"90m"`, `"1h 30m"`). Zero means "no limit" where a setting says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub u64);

impl Seconds {
    /// The duration, or `None` when it is zero ("no limit").
    pub fn limit(self) -> Option<Duration> {
        (self.0 > 0).then(|| Duration::from_secs(self.0))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;
        impl de::Visitor<'_> for SecondsVisitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a number of seconds (0 or more) or a duration such as \"6h\" or \"90m\"",
                )
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Seconds, E> {
                Ok(Seconds(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seconds, E> {
                u64::try_from(n).map(Seconds).map_err(|_| {
                    E::custom(format!(
                        "{n} is negative: give seconds (0 or more) or e.g. \"6h\""
                    ))
                })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Seconds, E> {
                parse_duration(text).map(Seconds).map_err(E::custom)
            }
        }
        d.deserialize_any(SecondsVisitor)
    }
}

/// Parses `"6h"`, `"90m"`, `"1h 30m"`, `"45s"` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    let span: jiff::Span = text
        .parse()
        .map_err(|e| format!("`{text}` is not a duration such as 3600, \"90m\" or \"6h\": {e}"))?;
    let secs = span
        .total(jiff::Unit::Second)
        .map_err(|e| format!("`{text}`: {e}"))?;
    if secs < 0.0 {
        return Err(format!("`{text}` is negative"));
    }
    Ok(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("6h"), Ok(21600));
        assert_eq!(parse_duration("1h 30m"), Ok(5400));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn probability_rolls_at_the_extremes() {
        let mut rng = rand::rng();
        for _ in 0..1000 {
            assert!(!Probability::new(0.0).roll(&mut rng));
            assert!(Probability::new(1.0).roll(&mut rng));
        }
    }
}
