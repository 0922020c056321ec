//! A unit child never outlives its `deltaic run`.
//!
//! A unit (`deltaic rsync backup HOST` started by a run) leads its own process group, with
//! rsync, ssh and the hooks in it ([`super::child`]). If the run dies without stopping it
//! (SIGKILL, the OOM killer, a crash), the unit would go on writing into ROOT without the run's
//! lock: a rerun would find the unit's lock held and fail it, and could snapshot a tree still
//! being written. So a unit child started by a run ([`lock::RUN_PID_ENV`] is set) calls [`arm`]
//! before anything else:
//!
//! 1. SIGTERM, SIGINT and SIGHUP are caught by a thread (signal-hook's iterator);
//! 2. the kernel is asked to send SIGTERM when the parent dies (`PR_SET_PDEATHSIG`);
//! 3. if the parent is no longer the run named in the environment, the run died before step 2
//!    could take effect: the unit exits at once with an error.
//!
//! On one of those signals the thread sends SIGTERM to the unit's whole process group, waits up
//! to [`GRACE`] for the other members to go, SIGKILLs the group (the unit with it) if any remain,
//! and otherwise ends the unit by the signal it got, as an unguarded unit would have ended.
//! A unit started by hand is not armed: Ctrl-C in a shell reaches its whole group anyway.

use super::signals::STOP_SIGNALS;
use crate::util::lock;
use anyhow::{Context, bail};
use rustix::process::{Pid, Signal};
use signal_hook::iterator::Signals;
use std::time::{Duration, Instant};

/// How long the unit's processes get to exit after SIGTERM before the group gets SIGKILL
/// (shorter than the run's own grace period, [`super::child::KILL_GRACE`]).
pub const GRACE: Duration = Duration::from_secs(3);

/// Arms the guard when this process is a unit child of `deltaic run` (see the module doc);
/// does nothing otherwise. Call once, before the unit does any work.
///
/// Errors: [`lock::RUN_PID_ENV`] is garbled; the run that started this unit has already exited;
/// the signal handlers, the parent-death signal or the thread cannot be set up.
pub fn arm() -> anyhow::Result<()> {
    let Some(run_pid) = lock::run_pid_from_env()? else {
        return Ok(());
    };
    let signals = Signals::new(STOP_SIGNALS).context("installing the unit's signal handlers")?;
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
        .context("asking for SIGTERM when deltaic run exits (PR_SET_PDEATHSIG)")?;
    if rustix::process::getppid() != Some(run_pid) {
        bail!(
            "the deltaic run (pid {}) that started this unit has already exited, so the unit \
             does not start (to run it by hand, unset {})",
            run_pid.as_raw_nonzero(),
            lock::RUN_PID_ENV
        );
    }
    let me = rustix::process::getpid();
    let leader = rustix::process::getpgrp() == me;
    std::thread::Builder::new()
        .name("unit-guard".into())
        .spawn(move || guard(signals, me, leader))
        .context("starting the unit's signal thread")?;
    Ok(())
}

/// The guard thread: waits for the first stop signal, then stops the unit.
fn guard(mut signals: Signals, me: Pid, leader: bool) {
    let Some(signal) = signals.forever().next() else {
        return;
    };
    eprintln!(
        "deltaic: signal {signal} (deltaic run stopped or exited): terminating this unit and \
         its processes"
    );
    if leader {
        // We get this SIGTERM too: the iterator swallows it.
        let _ = rustix::process::kill_current_process_group(Signal::TERM);
        let deadline = Instant::now() + GRACE;
        while others_alive(me) != Some(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if others_alive(me) != Some(false) {
            eprintln!(
                "deltaic: processes of this unit outlived SIGTERM by {} s: killing them",
                GRACE.as_secs()
            );
            let _ = rustix::process::kill_current_process_group(Signal::KILL);
        }
    }
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    signal_hook::low_level::exit(128 + signal);
}

/// Whether a live (not zombie) process other than `me` is in `me`'s process group (`me` leads
/// it); `None` when /proc cannot be read.
fn others_alive(me: Pid) -> Option<bool> {
    let group = me.as_raw_nonzero().get();
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == group {
            continue;
        }
        if let Some((state, pgrp)) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .as_deref()
            .and_then(state_and_group)
            && pgrp == group
            && state != 'Z'
        {
            found = true;
            break;
        }
    }
    Some(found)
}

/// The state letter and process group of a `/proc/PID/stat` line
/// (`PID (COMM) STATE PPID PGRP ...`, where COMM may hold spaces and parentheses).
fn state_and_group(stat: &str) -> Option<(char, i32)> {
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_state_and_group_even_with_odd_command_names() {
        assert_eq!(
            state_and_group("4242 (rsync) S 4200 4100 4100 0 -1 4194560"),
            Some(('S', 4100))
        );
        assert_eq!(state_and_group("7 (a) b (c) Z 1 7 7 0"), Some(('Z', 7)));
        assert_eq!(state_and_group("garbage"), None);
    }

    #[test]
    fn the_other_members_of_a_group_are_seen_until_they_are_gone() {
        use std::os::unix::process::CommandExt;
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = Pid::from_child(&leader);
        let deadline = Instant::now() + Duration::from_secs(5);
        while others_alive(pid) != Some(true) {
            assert!(
                Instant::now() < deadline,
                "the background sleep never showed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        rustix::process::kill_process_group(pid, Signal::KILL).unwrap();
        leader.wait().unwrap();
        while others_alive(pid) != Some(false) {
            assert!(Instant::now() < deadline, "the sleep outlived SIGKILL");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
