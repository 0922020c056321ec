//! The one integration-test binary: each module runs the real `deltaic` binary for one area.

mod prune;
