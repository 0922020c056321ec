//! The quota budget shared by every unit of a run (github-rgw-rbd.md §1.11, issue 3 item 5).
//!
//! Each unit is a separate process (D2) and all of them spend one token's hourly quota. They
//! coordinate through a small JSON file, `ROOT/.deltaic/github-quota.json`:
//!
//! ```json
//! {"limit":5000,"remaining":4210,"reset":1767225600,"in_flight":{"4711":1},"pause_until":null}
//! ```
//!
//! Protocol (every step reads, changes and rewrites the file while holding an exclusive `flock`
//! on it; the critical sections never wait for the network):
//!
//! 1. **Admission.** Before a request the client calls [`Budget::admit`]. Every request first
//!    honours `pause_until` (a secondary limit that any unit met: GitHub asks all clients of
//!    the token to hold back). A request that costs quota (one without `If-None-Match`) is
//!    refused while `remaining − Σ in_flight ≤ reserve` and `reset` is in the future; the
//!    caller then waits until `reset` (when that is within `github-max-wait`) or stops with
//!    `ApiError::Budget`. An admitted costly request adds one to `in_flight[<own pid>]`.
//!    Conditional requests are not counted: a 304 costs nothing, and GitHub's own answer still
//!    stops them if the quota is gone.
//! 2. **Answer.** After every answer [`Ticket::finish`] removes the request from `in_flight`
//!    and merges the answer's `X-RateLimit-*` headers: a later window (`reset` more than a
//!    couple of seconds later) replaces the record; the same window keeps the smaller
//!    `remaining` (answers of concurrent units arrive in any order, and the count only falls
//!    within a window); an answer from an older window is ignored unless the recorded window
//!    is already over. Only the REST `core` quota is tracked. A dropped ticket (a cancelled
//!    request) releases its slot too.
//! 3. **Crashes.** `in_flight` entries of processes that no longer exist are dropped at each
//!    admission, so a killed unit cannot hold slots. The file is rewritten in place without
//!    fsync: it is a hint, not backup data. A torn or unreadable file reads as "nothing known",
//!    and the next answer's headers restore it; GitHub's own limits stay authoritative.
//!
//! Without a file (no backup root, as in `github ls` on a workstation, or when the file cannot
//! be opened) the same rules apply to an in-memory record shared by this process's requests.

use super::ratelimit::Quota;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// File name of the shared record under `ROOT/.deltaic/`.
pub const FILE_NAME: &str = "github-quota.json";

/// Two `X-RateLimit-Reset` values this close belong to the same window.
const SAME_WINDOW_SLACK: u64 = 2;

/// The shared record (the JSON file's content).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuotaState {
    /// Requests per window, as last seen.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Requests left in the window (the smallest value seen in it).
    #[serde(default)]
    pub remaining: Option<u64>,
    /// When the window resets, epoch seconds.
    #[serde(default)]
    pub reset: Option<u64>,
    /// Costly requests sent and not yet answered, per process id.
    #[serde(default)]
    pub in_flight: BTreeMap<u32, u64>,
    /// No request of any unit before this epoch time (a secondary rate limit).
    #[serde(default)]
    pub pause_until: Option<f64>,
}

impl QuotaState {
    fn in_flight_total(&self) -> u64 {
        self.in_flight.values().sum()
    }

    /// Merges an answer's quota (rule 2 of the protocol).
    fn observe(&mut self, quota: &Quota, now: f64) {
        if !quota.is_core() {
            return;
        }
        match self.reset {
            // A later window (or nothing known yet): the answer replaces the record.
            None => self.replace(quota),
            Some(reset) if quota.reset > reset + SAME_WINDOW_SLACK => self.replace(quota),
            // An answer from an older window: stale, unless our window is over anyway.
            Some(reset) if quota.reset + SAME_WINDOW_SLACK < reset => {
                if (reset as f64) <= now {
                    self.replace(quota);
                }
            }
            // The same window: the count only falls, so the smaller value is the newer one.
            Some(reset) => {
                self.remaining = Some(
                    self.remaining
                        .map_or(quota.remaining, |r| r.min(quota.remaining)),
                );
                self.reset = Some(reset.max(quota.reset));
            }
        }
        if quota.limit.is_some() {
            self.limit = quota.limit;
        }
    }

    fn replace(&mut self, quota: &Quota) {
        self.remaining = Some(quota.remaining);
        self.reset = Some(quota.reset);
    }

    /// Drops `in_flight` entries of processes that no longer exist (rule 3).
    fn forget_dead_processes(&mut self) {
        self.in_flight
            .retain(|&pid, count| *count > 0 && process_alive(pid));
    }
}

/// Whether a process with this id exists (signal 0; EPERM means it exists under another user).
fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Why a request has to wait before it may be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// Epoch time (seconds) from which the request may go.
    pub until: f64,
    /// What holds it, for messages.
    pub reason: String,
}

/// The shared quota budget of one client (see the module documentation for the protocol).
#[derive(Debug)]
pub struct Budget {
    file: Option<PathBuf>,
    /// The latest record; the whole record when there is no file. Its lock also serialises this
    /// process's own accesses to the file.
    memory: Mutex<QuotaState>,
    reserve: u64,
    warned: AtomicBool,
}

impl Budget {
    /// A budget kept in `file` (created when missing), or in memory when `file` is `None`.
    /// `reserve` is the number of requests left untouched (`github-quota-reserve`).
    pub fn new(file: Option<PathBuf>, reserve: u64) -> Budget {
        Budget {
            file,
            memory: Mutex::new(QuotaState::default()),
            reserve,
            warned: AtomicBool::new(false),
        }
    }

    /// The shared file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Asks to send one request at epoch time `now` (rule 1). `costly`: the request carries no
    /// ETag and will use quota. `force`: the caller already waited for the hold it was given;
    /// it goes now and lets GitHub's answer decide (a test's scaled-down waits end before the
    /// real reset). Returns a ticket to finish with the answer, or the hold to wait for.
    pub fn admit(&self, now: f64, costly: bool, force: bool) -> Result<Ticket<'_>, Hold> {
        let reserve = self.reserve;
        self.with_state(|state| {
            state.forget_dead_processes();
            if !force {
                if let Some(until) = state.pause_until.filter(|&t| t > now) {
                    return Err(Hold {
                        until,
                        reason: "another unit met a secondary rate limit".into(),
                    });
                }
                if let (true, Some(remaining), Some(reset)) = (costly, state.remaining, state.reset)
                {
                    let in_flight = state.in_flight_total();
                    if reset as f64 > now && remaining.saturating_sub(in_flight) <= reserve {
                        return Err(Hold {
                            until: reset as f64,
                            reason: format!(
                                "the token's quota is down to {remaining} requests \
                                 ({in_flight} in flight, {reserve} kept in reserve by \
                                 github-quota-reserve)"
                            ),
                        });
                    }
                }
            }
            if costly {
                *state.in_flight.entry(std::process::id()).or_insert(0) += 1;
            }
            Ok(Ticket {
                budget: self,
                costly,
                open: true,
            })
        })
    }

    /// Records a secondary limit: no unit sends anything before epoch time `until`.
    pub fn pause(&self, until: f64) {
        self.with_state(|state| {
            state.pause_until = Some(state.pause_until.map_or(until, |t| t.max(until)));
        });
    }

    /// The record as last read or written.
    #[cfg(test)]
    pub fn snapshot(&self) -> QuotaState {
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn release(&self, costly: bool, quota: Option<&Quota>, now: f64) {
        self.with_state(|state| {
            if costly {
                let pid = std::process::id();
                if let Some(count) = state.in_flight.get_mut(&pid) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        state.in_flight.remove(&pid);
                    }
                }
            }
            if let Some(quota) = quota {
                state.observe(quota, now);
            }
        });
    }

    /// Runs `change` on the record: the file's under its flock when there is a file, else the
    /// in-memory one. File trouble is a warning (once) and falls back to memory.
    fn with_state<R>(&self, change: impl FnOnce(&mut QuotaState) -> R) -> R {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = &self.file else {
            return change(&mut memory);
        };
        let mut file = match open_locked(path) {
            Ok((file, state)) => {
                *memory = state;
                file
            }
            Err(err) => {
                self.warn(path, &err);
                return change(&mut memory);
            }
        };
        let result = change(&mut memory);
        if let Err(err) = rewrite(&mut file, &memory) {
            self.warn(path, &err);
        }
        result
        // `file` closes here, releasing the flock.
    }

    fn warn(&self, path: &Path, err: &std::io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "shared GitHub quota file {}: {err}; this unit keeps its own count only",
                path.display()
            );
        }
    }
}

/// Opens and exclusively locks the record, and reads it (an empty or unreadable file is an
/// empty record).
fn open_locked(path: &Path) -> std::io::Result<(File, QuotaState)> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    file.lock()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let state = serde_json::from_str(&text).unwrap_or_default();
    Ok((file, state))
}

/// Replaces the record's content: written over the old bytes from the start, then cut to its
/// length. Not `set_len(0)` first: the record is rewritten twice per request, and on ext4 a
/// truncation to zero frees the file's blocks in a journal transaction and makes the file system
/// flush the rewritten file at close (`auto_da_alloc`); with other I/O going on, each took
/// milliseconds. A crash mid-write can leave a torn record, which reads as "nothing known"
/// (module doc, rule 3).
fn rewrite(file: &mut File, state: &QuotaState) -> std::io::Result<()> {
    let text = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    file.rewind()?;
    file.write_all(&text)?;
    file.set_len(text.len() as u64)
}

/// One admitted request: finish it with the answer's quota. Dropping it unfinished (a cancelled
/// or failed request) releases its slot without new quota information.
#[derive(Debug)]
pub struct Ticket<'a> {
    budget: &'a Budget,
    costly: bool,
    open: bool,
}

impl Ticket<'_> {
    /// Releases the slot and merges the answer's quota, if it had one (rule 2).
    pub fn finish(mut self, quota: Option<&Quota>, now: f64) {
        self.open = false;
        self.budget.release(self.costly, quota, now);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.open {
            self.budget.release(self.costly, None, now_epoch());
        }
    }
}

/// The current time in epoch seconds.
pub fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(remaining: u64, reset: u64) -> Quota {
        Quota {
            limit: Some(5000),
            remaining,
            reset,
            resource: Some("core".into()),
        }
    }

    #[test]
    fn two_budgets_share_the_file_and_count_requests_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let a = Budget::new(Some(path.clone()), 1);
        let b = Budget::new(Some(path.clone()), 1);
        let now = 1000.0;
        a.admit(now, true, false)
            .unwrap()
            .finish(Some(&quota(3, 2000)), now);
        // 3 left, reserve 1: two may fly at once, a third must wait for the reset.
        let first = b.admit(now, true, false).unwrap();
        let second = a.admit(now, true, false).unwrap();
        let hold = b.admit(now, true, false).unwrap_err();
        assert_eq!(hold.until, 2000.0);
        assert!(
            hold.reason.contains("down to 3 requests (2 in flight"),
            "{}",
            hold.reason
        );
        // Conditional requests are not held by the quota.
        b.admit(now, false, false).unwrap().finish(None, now);
        drop(first);
        let third = b.admit(now, true, false).unwrap();
        second.finish(Some(&quota(2, 2000)), now);
        third.finish(Some(&quota(1, 2000)), now);
        let on_disk: QuotaState =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(on_disk.remaining, Some(1));
        assert!(on_disk.in_flight.is_empty(), "{on_disk:?}");
        // After the reset the stale record no longer holds anyone back.
        a.admit(2000.5, true, false).unwrap();
    }

    #[test]
    fn answers_merge_by_window() {
        let mut s = QuotaState::default();
        s.observe(&quota(100, 2000), 1000.0);
        s.observe(&quota(120, 2001), 1000.0); // same window, late answer: keep the minimum
        assert_eq!((s.remaining, s.reset), (Some(100), Some(2001)));
        s.observe(&quota(90, 1000), 1500.0); // an older window while ours runs: ignored
        assert_eq!(s.remaining, Some(100));
        s.observe(&quota(4999, 5600), 2100.0); // the next window replaces
        assert_eq!((s.remaining, s.reset), (Some(4999), Some(5600)));
        let search = Quota {
            resource: Some("search".into()),
            ..quota(1, 9999)
        };
        s.observe(&search, 2100.0);
        assert_eq!(s.remaining, Some(4999));
    }

    #[test]
    fn dead_processes_lose_their_slots_and_garbage_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let dead_pid = i32::MAX as u32 - 7;
        std::fs::write(
            &path,
            format!("{{\"remaining\":5,\"reset\":9000,\"in_flight\":{{\"{dead_pid}\":4}}}}"),
        )
        .unwrap();
        let budget = Budget::new(Some(path.clone()), 2);
        // 5 - 4 would be at the reserve, but pid {dead_pid} does not exist.
        let ticket = budget.admit(1000.0, true, false).unwrap();
        assert_eq!(
            budget
                .snapshot()
                .in_flight
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec![std::process::id()]
        );
        drop(ticket);
        assert!(budget.snapshot().in_flight.is_empty());
        std::fs::write(&path, "{\"remaining\":").unwrap();
        budget
            .admit(1000.0, true, false)
            .unwrap()
            .finish(None, 1000.0);
        assert_eq!(budget.snapshot().remaining, None);
    }

    #[test]
    fn a_shorter_record_replaces_a_longer_one_completely() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // A long record (a dead process's slots and a far pause), then a short one: the file
        // must hold the new record only, not its head over the old tail.
        let dead_pid = i32::MAX as u32 - 7;
        std::fs::write(
            &path,
            format!(
                "{{\"limit\":5000,\"remaining\":4999,\"reset\":9000,\
                 \"in_flight\":{{\"{dead_pid}\":4}},\"pause_until\":12345.678}}"
            ),
        )
        .unwrap();
        let budget = Budget::new(Some(path.clone()), 0);
        budget
            .admit(13000.0, true, false)
            .unwrap()
            .finish(Some(&quota(4998, 9000)), 13000.0);
        let text = std::fs::read_to_string(&path).unwrap();
        let on_disk: QuotaState = serde_json::from_str(&text).unwrap();
        assert_eq!(on_disk, budget.snapshot());
        assert_eq!(text, serde_json::to_string(&on_disk).unwrap());
        assert!(on_disk.in_flight.is_empty(), "{text}");
    }

    #[test]
    fn a_pause_holds_every_request_until_it_ends() {
        let budget = Budget::new(None, 0);
        budget.pause(1060.0);
        let hold = budget.admit(1000.0, false, false).unwrap_err();
        assert_eq!(hold.until, 1060.0);
        budget.admit(1000.0, false, true).unwrap();
        budget.admit(1061.0, true, false).unwrap();
    }
}
