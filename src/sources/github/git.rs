//! Bare git mirrors of repositories and wikis (github-rgw-rbd.md §1.5). Not implemented yet.
