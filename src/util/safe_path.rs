//! Joining names that come from a remote system (release tags, asset names, commit ids) under a
//! local directory, refusing anything that could escape it or collide with deltaic's own
//! temporary files: empty names or components, absolute paths, `.` and `..`, NUL bytes, and
//! components starting with `.backup-tmp` (those are garbage-collected).

use super::atomic_file::TEMP_PREFIX;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a remote-supplied name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeName {
    /// The name as received.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for UnsafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unsafe name {:?}: {}", self.name, self.reason)
    }
}

impl std::error::Error for UnsafeName {}

/// Checks one path component (no `/` allowed).
pub fn check_component(name: &str) -> Result<(), UnsafeName> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.contains('/') {
        "contains `/`"
    } else if name == "." || name == ".." {
        "is `.` or `..`"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name.starts_with(TEMP_PREFIX) {
        "looks like a temporary file"
    } else {
        return Ok(());
    };
    Err(UnsafeName {
        name: name.to_string(),
        reason,
    })
}

/// `base` joined with the `/`-separated relative name `rel`, every component checked with
/// [`check_component`]. An absolute `rel`, or one with empty components (`a//b`, `a/`), is
/// refused.
pub fn join(base: &Path, rel: &str) -> Result<PathBuf, UnsafeName> {
    if rel.starts_with('/') {
        return Err(UnsafeName {
            name: rel.to_string(),
            reason: "is absolute",
        });
    }
    let mut path = base.to_path_buf();
    for part in rel.split('/') {
        check_component(part).map_err(|e| UnsafeName {
            name: rel.to_string(),
            reason: e.reason,
        })?;
        path.push(part);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_and_nested_names_are_joined() {
        let base = Path::new("/b/releases");
        assert_eq!(join(base, "v1.0").unwrap(), Path::new("/b/releases/v1.0"));
        assert_eq!(
            join(base, "rel/v1").unwrap(),
            Path::new("/b/releases/rel/v1")
        );
        assert_eq!(join(base, "..x").unwrap(), Path::new("/b/releases/..x"));
    }

    #[test]
    fn escaping_or_colliding_names_are_refused() {
        let base = Path::new("/b");
        for bad in [
            "",
            "/abs",
            "..",
            "../x",
            "a/../../x",
            ".",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            ".backup-tmp123",
        ] {
            let err = join(base, bad).unwrap_err();
            assert_eq!(err.name, bad);
        }
        assert!(check_component("a/b").is_err());
        assert!(check_component("ok name").is_ok());
    }
}
