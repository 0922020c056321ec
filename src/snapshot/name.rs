//! Snapshot names `YYYYMMDD-N` (core-rsync-coda.md §5.1): strict parsing (BUG-10) and ordering
//! by (date, numeric revision) (BUG-11: the original sorted `-10` before `-9`).

use jiff::civil::Date;
use std::fmt;
use std::str::FromStr;

/// A snapshot name: the local date of the run and a revision starting at 1.
///
/// ```
/// use deltaic::snapshot::SnapshotName;
/// let nine: SnapshotName = "20240101-9".parse().unwrap();
/// let ten: SnapshotName = "20240101-10".parse().unwrap();
/// assert!(nine < ten); // by (date, revision), not as strings
/// assert_eq!(ten.to_string(), "20240101-10");
/// assert!("20240101-x".parse::<SnapshotName>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName {
    /// The day the snapshot was taken (local time).
    pub date: Date,
    /// 1 for the first snapshot of the day, 2 for the second, ...
    pub revision: u32,
}

/// Why a string is not a snapshot name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a snapshot name of the form YYYYMMDD-N")]
pub struct BadSnapshotName(pub String);

impl SnapshotName {
    /// The first name of `date` (`YYYYMMDD-1`).
    pub fn first_of(date: Date) -> SnapshotName {
        SnapshotName { date, revision: 1 }
    }

    /// The next free name for `date`, given the names that exist.
    pub fn next_free<'a>(
        date: Date,
        existing: impl IntoIterator<Item = &'a SnapshotName>,
    ) -> SnapshotName {
        let last = existing
            .into_iter()
            .filter(|n| n.date == date)
            .map(|n| n.revision)
            .max()
            .unwrap_or(0);
        SnapshotName {
            date,
            revision: last + 1,
        }
    }

    /// ISO year and week of the date.
    pub fn iso_week(&self) -> (i16, i8) {
        let w = self.date.iso_week_date();
        (w.year(), w.week())
    }

    /// The "ISO 28-day month" of the original's prune: `(iso_week - 1) / 4 + 1`, 1..=14 (§5.1).
    pub fn month(&self) -> i8 {
        (self.iso_week().1 - 1) / 4 + 1
    }
}

impl FromStr for SnapshotName {
    type Err = BadSnapshotName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadSnapshotName(s.to_string());
        let (date, rev) = s.split_once('-').ok_or_else(bad)?;
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if rev.is_empty() || rev.len() > 9 || !rev.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i16 = date[0..4].parse().map_err(|_| bad())?;
        let month: i8 = date[4..6].parse().map_err(|_| bad())?;
        let day: i8 = date[6..8].parse().map_err(|_| bad())?;
        let date = Date::new(year, month, day).map_err(|_| bad())?;
        let revision: u32 = rev.parse().map_err(|_| bad())?;
        if revision == 0 {
            return Err(bad());
        }
        Ok(SnapshotName { date, revision })
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}{:02}{:02}-{}",
            self.date.year(),
            self.date.month(),
            self.date.day(),
            self.revision
        )
    }
}

impl serde::Serialize for SnapshotName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SnapshotName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn revisions_order_numerically() {
        let nine: SnapshotName = "20240101-9".parse().unwrap();
        let ten: SnapshotName = "20240101-10".parse().unwrap();
        assert!(nine < ten);
    }

    #[test]
    fn malformed_names_are_rejected() {
        for bad in [
            "",
            "20240101",
            "20240101-",
            "20240101-0",
            "2024011-1",
            "20241301-1",
            "20240101-1-2",
            "x20240101-1",
            "20240101-1x",
            "20240230-1",
            "20240101--1",
        ] {
            assert!(bad.parse::<SnapshotName>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn next_free_counts_past_the_highest_revision() {
        let names: Vec<SnapshotName> = ["20240101-1", "20240101-3", "20240102-7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let day = "20240101-1".parse::<SnapshotName>().unwrap().date;
        assert_eq!(
            SnapshotName::next_free(day, &names).to_string(),
            "20240101-4"
        );
        let other = jiff::civil::date(2024, 1, 3);
        assert_eq!(
            SnapshotName::next_free(other, &names).to_string(),
            "20240103-1"
        );
    }

    #[test]
    fn month_of_week_53_is_14() {
        // 2020-12-31 is in ISO week 53 of 2020.
        let n: SnapshotName = "20201231-1".parse().unwrap();
        assert_eq!(n.iso_week(), (2020, 53));
        assert_eq!(n.month(), 14);
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(days in 0i32..80_000, revision in 1u32..1_000_000) {
            let date = jiff::civil::date(1900, 1, 1).checked_add(jiff::Span::new().days(days)).unwrap();
            let name = SnapshotName { date, revision };
            prop_assert_eq!(name.to_string().parse::<SnapshotName>().unwrap(), name);
        }

        #[test]
        fn parse_never_panics(s in ".{0,20}") {
            let _ = s.parse::<SnapshotName>();
        }
    }
}
