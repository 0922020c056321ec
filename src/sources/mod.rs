//! Sources: the kinds of data Deltaic pulls in, and the units each one plans for a run.
//!
//! A [`Source`] only *plans*: it turns the config into tonight's [`Unit`]s. The backup itself is
//! the source's own subcommand (`deltaic rsync backup HOST`), which `deltaic run` executes in a
//! child process per unit (D2), and which an operator can run by hand with the same effect.
//! Adding a source means one folder here, one entry in [`ALL_SOURCES`] and one CLI group.

pub mod coda;
pub mod github;
pub mod rbd;
pub mod rgw;
pub mod rsync;

use crate::config::Config;
use std::fmt;
use std::num::NonZeroUsize;

/// Relative path naming a unit's data under ROOT and its logs under `ROOT/Logs` (`rsync/octopus`).
/// Archive sets use it as the archive name, so these strings are a compatibility contract
/// (core-rsync-coda.md §11).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct UnitRoot(String);

impl UnitRoot {
    /// Builds a unit root from components, each of which must be a safe single path component.
    pub fn from_components(parts: &[&str]) -> Result<UnitRoot, UnsafeComponent> {
        for part in parts {
            check_component(part)?;
        }
        Ok(UnitRoot(parts.join("/")))
    }

    /// The relative path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The source label: the first component (`rsync`).
    pub fn source(&self) -> &str {
        self.0.split('/').next().unwrap_or("")
    }
}

/// A name that cannot be one directory under ROOT (empty, `.`, `..`, or containing `/` or NUL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` cannot be used as a directory name (empty, `.`, `..`, or contains `/`)")]
pub struct UnsafeComponent(pub String);

impl From<UnsafeComponent> for String {
    fn from(e: UnsafeComponent) -> String {
        e.to_string()
    }
}

/// Rejects empty, `.`, `..`, and components containing `/` or NUL (BUG-4, BUG-C7).
pub fn check_component(part: &str) -> Result<(), UnsafeComponent> {
    if part.is_empty() || part == "." || part == ".." || part.contains('/') || part.contains('\0') {
        return Err(UnsafeComponent(part.to_string()));
    }
    Ok(())
}

impl TryFrom<String> for UnitRoot {
    type Error = UnsafeComponent;
    fn try_from(s: String) -> Result<Self, UnsafeComponent> {
        let parts: Vec<&str> = s.split('/').collect();
        UnitRoot::from_components(&parts)
    }
}

impl From<UnitRoot> for String {
    fn from(u: UnitRoot) -> String {
        u.0
    }
}

impl fmt::Display for UnitRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One independently backed-up thing; `deltaic run` runs each in its own child process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Where its data and logs live.
    pub root: UnitRoot,
    /// The child argv after `deltaic -c CONFIG`, e.g. `["rsync", "backup", "host", "--scrub"]`.
    pub backup_args: Vec<String>,
}

/// A kind of data Deltaic pulls in. Planning only; see the module doc.
pub trait Source: Sync {
    /// Config section and CLI group name (`rsync`).
    fn label(&self) -> &'static str;
    /// How many of this source's units may run at once (`<label>-workers`).
    fn workers(&self, config: &Config) -> NonZeroUsize;
    /// Tonight's units in run order. Random extras (scrubs) are drawn from `rng`, once per unit.
    fn plan_units(&self, config: &Config, rng: &mut dyn rand::Rng) -> anyhow::Result<Vec<Unit>>;
}

/// Every source, in the original's registration order.
pub static ALL_SOURCES: &[&dyn Source] = &[
    &coda::Coda,
    &github::Github,
    &rbd::Rbd,
    &rgw::Rgw,
    &rsync::Rsync,
];
