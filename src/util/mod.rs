//! Domain-free helpers, one job per file.

pub mod atomic_file;
pub mod file_time;
pub mod gc;
pub mod humanize;
pub mod lock;
pub mod process;
pub mod safe_path;
pub mod update_file;
