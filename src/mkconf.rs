//! crontab and sudoers text for an installation (core-rsync-coda.md §7). Pure functions.
