//! Stopping a run cleanly. SIGTERM, SIGINT or SIGHUP to `deltaic run` set a flag instead of
//! killing it at once: the workers start no further units, each running unit's process group is
//! terminated ([`super::child::run_in_group`]), the manifest is written as partial and no
//! snapshot is taken. A second signal, for when the clean stop itself hangs, sends SIGTERM to
//! every running unit's process group ([`super::child::RUNNING_UNITS`]) and exits at
//! once with 128 + the signal number. (Units also stop by themselves when the run dies in any
//! other way, even by SIGKILL: see [`super::unit_guard`].)
//!
//! The signals are read by a thread (signal-hook's iterator), so that what happens on them is
//! ordinary code, not a signal handler.

use super::child::{self, UnitGroups};
use anyhow::Context;
use rustix::process::Signal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The signals that stop a run (and a unit, [`super::unit_guard`]).
pub const STOP_SIGNALS: [i32; 3] = [SIGTERM, SIGINT, SIGHUP];

/// Installs the handlers, starts the thread acting on them, and returns the flag the first
/// signal sets.
///
/// Errors: a handler cannot be installed, or the thread cannot be started.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let mut signals = Signals::new(STOP_SIGNALS).context("installing the signal handlers")?;
    let stop = Arc::clone(&flag);
    std::thread::Builder::new()
        .name("run-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if on_signal(&stop, &child::RUNNING_UNITS, signal) == Next::Exit {
                    signal_hook::low_level::exit(128 + signal);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(flag)
}

/// What the run does after a signal.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Go on stopping cleanly.
    StopCleanly,
    /// Exit at once (the units' groups have been signalled).
    Exit,
}

/// The first signal sets `stop`; a later one sends SIGTERM to the `units`' groups and says exit.
fn on_signal(stop: &AtomicBool, units: &UnitGroups, signal: i32) -> Next {
    if !stop.swap(true, Ordering::SeqCst) {
        eprintln!(
            "deltaic run: signal {signal}: stopping the running units; no snapshot will be \
             taken (signal again to exit at once)"
        );
        return Next::StopCleanly;
    }
    let groups = units.signal_all(Signal::TERM);
    eprintln!("deltaic run: signal {signal} again: exiting now ({groups} unit(s) terminated)");
    Next::Exit
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn the_first_signal_stops_cleanly_and_the_second_terminates_the_unit_groups() {
        // A "unit": a shell leading its own group, with a background sleep in it.
        let mut unit = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        let units = UnitGroups::new();
        let _registered = units.register(rustix::process::Pid::from_child(&unit));
        let stop = AtomicBool::new(false);

        assert_eq!(on_signal(&stop, &units, SIGTERM), Next::StopCleanly);
        assert!(stop.load(Ordering::SeqCst));
        assert!(
            unit.try_wait().unwrap().is_none(),
            "the first signal only sets the flag"
        );

        assert_eq!(on_signal(&stop, &units, SIGINT), Next::Exit);
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = unit.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the unit survived the second signal"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(SIGTERM));
    }
}
