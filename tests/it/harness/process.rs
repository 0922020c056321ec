//! Killing a `deltaic run` as a machine crash would: the run and every unit's process group
//! (a unit child leads its own group, with ssh and rsync in it) stop at the same instant and
//! never run another instruction, so nothing gets to clean up, write a footer or a manifest.
//! The run itself must lead its own group ([`super::deltaic::Deltaic::spawn`] does that), which
//! takes down what it runs directly too (e.g. `btrfs subvolume snapshot`).
//!
//! Also killing the run *alone* ([`kill_alone`]), as the OOM killer would: its units must then
//! stop by themselves ([`wait_groups_gone`]).

use rustix::process::{Pid, Signal};
use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

/// One process as `/proc/PID/stat` shows it.
struct ProcStat {
    pid: i32,
    state: char,
    ppid: i32,
    pgrp: i32,
}

/// Every process on the machine (those that vanish while being read are skipped).
fn processes() -> Vec<ProcStat> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if let [state, ppid, pgrp, ..] = fields[..] {
            found.push(ProcStat {
                pid,
                state: state.chars().next().unwrap_or('?'),
                ppid: ppid.parse().unwrap_or(0),
                pgrp: pgrp.parse().unwrap_or(0),
            });
        }
    }
    found
}

/// Live (not zombie) processes in the process group `pgrp`.
pub fn live_members(pgrp: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.pgrp == pgrp && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

/// The process groups led by children of `parent`: a `deltaic run`'s running units.
pub fn child_groups(parent: u32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == parent as i32 && p.pgrp == p.pid)
        .map(|p| p.pid)
        .collect()
}

fn signal_group(pgrp: i32, signal: Signal) {
    let _ = rustix::process::kill_process_group(Pid::from_raw(pgrp).unwrap(), signal);
}

/// Simulates a power loss under the running `deltaic run` `run` (started by
/// [`super::deltaic::Deltaic::spawn`], so it leads its own process group): freezes its group
/// and all its units' groups (SIGSTOP), then SIGKILLs them all, reaps `run`, and waits until no
/// process of those groups is left. Returns how many unit groups were killed.
pub fn crash(run: &mut Child) -> usize {
    let run_group = run.id() as i32;
    assert!(
        processes()
            .iter()
            .any(|p| p.pid == run_group && p.pgrp == run_group),
        "the run must lead its own process group"
    );
    signal_group(run_group, Signal::STOP);
    // Frozen, the run can start no new unit; its children leading groups are its units.
    let units = child_groups(run.id());
    for &g in &units {
        signal_group(g, Signal::STOP);
    }
    for &g in units.iter().chain([&run_group]) {
        signal_group(g, Signal::KILL);
    }
    run.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for &g in units.iter().chain([&run_group]) {
        while !live_members(g).is_empty() {
            assert!(
                Instant::now() < deadline,
                "process group {g} survived SIGKILL: {:?}",
                live_members(g)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    units.len()
}

/// SIGKILLs the process `run` alone (not its group, not its units) and reaps it.
pub fn kill_alone(run: &mut Child) {
    rustix::process::kill_process(Pid::from_child(run), Signal::KILL).unwrap();
    run.wait().unwrap();
}

/// Waits up to `limit` until no live process is left in any of `groups`; panics listing the
/// survivors (with their command lines) otherwise.
pub fn wait_groups_gone(groups: &[i32], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<i32> = groups.iter().flat_map(|&g| live_members(g)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let described: Vec<String> = left
                .iter()
                .map(|pid| {
                    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    format!(
                        "{pid}: {}",
                        String::from_utf8_lossy(&cmdline).replace('\0', " ")
                    )
                })
                .collect();
            panic!("processes of the unit groups {groups:?} outlived {limit:?}: {described:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
