//! The one integration-test binary (style.md §5): each file is a module.

mod harness;
mod snapshot;
