//! The integration tests: one binary (fast to link on 2 cores), one module per area, each
//! running the real `deltaic` binary. Shared fixtures live in `harness/`.

mod ceph;
mod coda;
mod e2e;
mod fake_github;
mod fake_github_serve;
mod github;
mod github_git;
mod harness;
mod prune;
mod pyjson;
mod rbd;
mod rgw;
mod rsync;
mod run;
mod snapshot;
