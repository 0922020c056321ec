//! Stopping a run cleanly. SIGTERM, SIGINT or SIGHUP to `deltaic run` set a flag instead of
//! killing it at once: the workers start no further units, each running unit's process group is
//! terminated ([`super::child::run_in_group`]), the manifest is written as partial and no
//! snapshot is taken. A second signal exits immediately (with 128 + the signal number), for
//! when the clean stop itself hangs.

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Installs the handlers and returns the flag they set.
///
/// Errors: a handler cannot be installed.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT, SIGHUP] {
        // The shutdown hook must be registered first: it sees the flag as it was before this
        // delivery, so only a second signal exits.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&flag))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flag)))
            .with_context(|| format!("installing the handler for signal {signal}"))?;
    }
    Ok(flag)
}
