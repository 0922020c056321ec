//! `deltaic run`: the nightly driver (core-rsync-coda.md §4, D2, D3).

pub mod manifest;
