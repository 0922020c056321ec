//! Domain-free helpers, one job per file.

pub mod atomic_file;
pub mod humanize;
pub mod lock;
pub mod process;
