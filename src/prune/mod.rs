//! Snapshot retention (core-rsync-coda.md §6.1, §6.3) and log pruning (§6.2).
