//! The one integration-test binary (style.md §5): each file is a module, sharing `harness`.

mod harness;
mod rsync;
