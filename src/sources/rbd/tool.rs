//! The `rbd` command-line tool, as the original used it (github-rgw-rbd.md §3.3), with the
//! fixes of §3.11: `snap ls --format=json` without `-l`, `import --dest-pool`, configurable
//! executable and global arguments (`rbd-path`, `rbd-args`; CEPH_CONF and CEPH_ARGS come from
//! the environment), and a time limit on everything (`rbd-timeout`): a short command is killed
//! when it runs that long, an export when it sends nothing for that long. Both run as a
//! [`Running`] child under one [`Watchdog`], which is killed and reaped whenever it is dropped
//! unfinished, so a parse error or a failing unit never leaves an `rbd` behind. If the unit
//! itself is killed, its `rbd` is in the unit's process group, which `deltaic run` signals as
//! soon as the unit has exited (`run::child::run_in_group`); a unit killed by hand leaves it to
//! end by itself: an export dies of SIGPIPE, a short command within `rbd-timeout`.

use crate::config::Config;
use crate::util::process::{self, display};
use anyhow::Context;
use rustix::io::Errno;
use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
use serde::Deserialize;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One entry of `rbd ls -l --format=json`: an image, or one of its snapshots.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PoolEntry {
    /// The image name.
    pub image: String,
    /// The snapshot name, for a snapshot entry.
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// One entry of `rbd snap ls --format=json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SnapInfo {
    /// The snapshot id.
    pub id: u64,
    /// The snapshot name.
    pub name: String,
}

/// How to run `rbd`.
#[derive(Debug, Clone)]
pub struct Rbd {
    program: String,
    global_args: Vec<String>,
    timeout: Option<Duration>,
}

impl Rbd {
    /// From `rbd-path`, `rbd-args` and `rbd-timeout`.
    pub fn from_config(config: &Config) -> Rbd {
        let s = &config.settings;
        Rbd {
            program: s.rbd_path.clone(),
            global_args: s.rbd_args.clone(),
            timeout: s.rbd_timeout.limit(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.global_args).args(args).stdin(Stdio::null());
        cmd
    }

    /// Starts `rbd ARGS` with stdout and stderr piped, under a [`Watchdog`] when `rbd-timeout`
    /// is set: `limit` says whether that is a limit on the whole run or on the time between two
    /// reads of its stdout.
    fn spawn(&self, args: &[&str], limit: Limit) -> anyhow::Result<Running> {
        let mut cmd = self.command(args);
        let line = display(&cmd);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{line}` (is rbd-path right?)"))?;
        let stdout = child.stdout.take();
        let stderr = spawn_tail(child.stderr.take());
        let watchdog = self.timeout.map(|t| (Watchdog::start(child.id(), t), t));
        Ok(Running {
            child,
            stdout,
            stderr,
            watchdog,
            limit,
            line,
            reaped: false,
        })
    }

    /// Runs a short command to the end within `rbd-timeout`; returns its stdout.
    fn run(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let mut running = self.spawn(args, Limit::Total)?;
        let mut out = Vec::new();
        if let Some(stdout) = running.stdout.as_mut() {
            // Read directly, not through `Running`'s `Read`: no read counts as progress.
            stdout
                .read_to_end(&mut out)
                .with_context(|| format!("reading the output of `{}`", running.line))?;
        }
        running.finish()?;
        Ok(out)
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, args: &[&str]) -> anyhow::Result<T> {
        let out = self.run(args)?;
        serde_json::from_slice(&out).with_context(|| {
            format!(
                "`rbd {}` printed something that is not the expected JSON: {}",
                args.join(" "),
                String::from_utf8_lossy(&out[..out.len().min(200)])
            )
        })
    }

    /// Every image and snapshot of `pool` (`rbd ls -l`: opens every image, so it is used only to
    /// find which image holds a snapshot).
    pub fn list_pool(&self, pool: &str) -> anyhow::Result<Vec<PoolEntry>> {
        self.json(&["ls", "-l", "-p", pool, "--format=json"])
    }

    /// The image names of `pool` (`rbd ls -p POOL --format=json`: opens no image).
    pub fn list_images(&self, pool: &str) -> anyhow::Result<Vec<String>> {
        self.json(&["ls", "-p", pool, "--format=json"])
    }

    /// The images of `pool` that have a snapshot named `snap`. One `rbd ls -l` first; when that
    /// fails (it opens every image, and one image that cannot be opened, e.g. being deleted,
    /// fails it all), `rbd snap ls` per image, skipping images that vanish meanwhile.
    pub fn images_with_snapshot(&self, pool: &str, snap: &str) -> anyhow::Result<Vec<String>> {
        let mut owners: Vec<String> = match self.list_pool(pool) {
            Ok(entries) => entries
                .into_iter()
                .filter(|e| e.snapshot.as_deref() == Some(snap))
                .map(|e| e.image)
                .collect(),
            Err(err) => {
                tracing::debug!("{err:#}; listing snapshots image by image");
                let mut owners = Vec::new();
                let mut failed = Vec::new();
                for image in self.list_images(pool)? {
                    match self.snapshots(pool, &image) {
                        Ok(snaps) if snaps.iter().any(|s| s.name == snap) => owners.push(image),
                        Ok(_) => {}
                        Err(err) => failed.push((image, err)),
                    }
                }
                // An image that failed and still exists might hold the snapshot: say so rather
                // than report it absent. One deleted meanwhile cannot.
                if !failed.is_empty() {
                    let now = self.list_images(pool)?;
                    if let Some((_, err)) = failed.into_iter().find(|(i, _)| now.contains(i)) {
                        return Err(err.context(format!("looking for snapshot {snap}")));
                    }
                }
                owners
            }
        };
        owners.dedup();
        Ok(owners)
    }

    /// The snapshots of `pool/image` (`rbd snap ls IMAGE -p POOL --format=json`).
    pub fn snapshots(&self, pool: &str, image: &str) -> anyhow::Result<Vec<SnapInfo>> {
        self.json(&["snap", "ls", image, "-p", pool, "--format=json"])
            .with_context(|| format!("listing the snapshots of RBD image {pool}/{image}"))
    }

    /// Creates snapshot `snap` of `pool/image`.
    pub fn snap_create(&self, pool: &str, image: &str, snap: &str) -> anyhow::Result<()> {
        self.mutate(&[
            "snap", "create", "--image", image, "--snap", snap, "-p", pool,
        ])
    }

    /// Removes snapshot `snap` of `pool/image`; a snapshot that is already gone counts as
    /// removed. `snap rm` is tried first (the common case costs one call); only when it fails
    /// is the image listed, so "gone" is decided by listing, not by parsing messages. Returns
    /// `true` when this call removed it, `false` when it is not on the image (or went away
    /// while `snap rm` failed).
    pub fn snap_remove(&self, pool: &str, image: &str, snap: &str) -> anyhow::Result<bool> {
        let Err(err) = self.mutate(&["snap", "rm", "--image", image, "--snap", snap, "-p", pool])
        else {
            return Ok(true);
        };
        match self.snapshots(pool, image) {
            Ok(listed) if listed.iter().any(|s| s.name == snap) => Err(err),
            Ok(_) => {
                tracing::debug!("{err:#} (the snapshot is not there)");
                Ok(false)
            }
            Err(list) => Err(err.context(format!(
                "snapshot {snap} of {pool}/{image} could not be removed, and listing the \
                 image failed too ({list:#})"
            ))),
        }
    }

    fn mutate(&self, args: &[&str]) -> anyhow::Result<()> {
        println!("{}", display(&self.command(args)));
        self.run(args).map(drop)
    }

    /// Starts `rbd export-diff` of `pool/image@snap` (from `from` when given) to a pipe.
    pub fn export_diff(
        &self,
        pool: &str,
        image: &str,
        snap: &str,
        from: Option<&str>,
    ) -> anyhow::Result<Running> {
        let mut args = vec![
            "export-diff",
            "--no-progress",
            "-p",
            pool,
            image,
            "--snap",
            snap,
            "-",
        ];
        if let Some(from) = from {
            args.extend(["--from-snap", from]);
        }
        self.spawn(&args, Limit::Idle)
    }

    /// `rbd import --no-progress --dest-pool POOL [--image-feature F]... PATH IMAGE` (a new
    /// image, with only `features` when any are given; no time limit, the file is local).
    pub fn import(
        &self,
        path: &Path,
        pool: &str,
        image: &str,
        features: &[String],
    ) -> anyhow::Result<()> {
        let mut cmd = self.command(&["import", "--no-progress", "--dest-pool", pool]);
        for feature in features {
            cmd.args(["--image-feature", feature]);
        }
        cmd.arg(path).arg(image);
        let line = display(&cmd);
        println!("{line}");
        let status = cmd
            .status()
            .with_context(|| format!("cannot start `{line}` (is rbd-path right?)"))?;
        if !status.success() {
            return Err(process::failure_of(line, status, &[]))
                .context("see rbd's message above; the new image's name must not exist yet");
        }
        Ok(())
    }
}

/// What `rbd-timeout` limits for a [`Running`] command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// The whole run (a short command).
    Total,
    /// The time between two reads of its stdout (an export).
    Idle,
}

/// A running `rbd` command: read its stdout (an export's stream), then [`Running::finish`] to
/// check its exit. Dropped unfinished, it kills and reaps the child.
pub struct Running {
    child: Child,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    watchdog: Option<(Watchdog, Duration)>,
    limit: Limit,
    line: String,
    reaped: bool,
}

impl Read for Running {
    /// Reads the stream; each read is progress for an idle limit.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(out) = self.stdout.as_mut() else {
            return Ok(0);
        };
        let n = out.read(buf)?;
        if let Some((w, _)) = &self.watchdog {
            w.progress();
        }
        Ok(n)
    }
}

impl Running {
    /// Waits for `rbd` to exit (after its stdout was read to the end) and checks its status.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.stdout = None;
        // Wait for the exit without reaping, so the watchdog (still armed, in case `rbd`
        // hangs after closing its stdout) never signals a pid that could be reused.
        let pid = Pid::from_child(&self.child);
        let exited = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
        while let Err(Errno::INTR) = waitid(WaitId::Pid(pid), exited) {}
        let fired = self
            .watchdog
            .take()
            .and_then(|(w, t)| w.stop().then_some(t));
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for `{}`", self.line));
        self.reaped = true;
        let stderr = join_tail(self.stderr.take());
        let status = status?;
        let outcome = match (fired, self.limit) {
            (None, _) if status.success() => return Ok(()),
            (None, _) => return Err(process::failure_of(self.line.clone(), status, &stderr).into()),
            (Some(t), Limit::Total) => format!(
                "did not finish within {} s and was killed (rbd-timeout)",
                t.as_secs()
            ),
            (Some(t), Limit::Idle) => format!(
                "sent nothing for {} s and was killed (rbd-timeout)",
                t.as_secs()
            ),
        };
        Err(process::ProcessError::new(self.line.clone(), outcome, None, &stderr).into())
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> &str {
        &self.line
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            if let Some((w, _)) = self.watchdog.take() {
                w.stop();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills a child that makes no progress for `limit`.
struct Watchdog {
    shared: Arc<WatchShared>,
    /// Dropped by [`Watchdog::stop`], which wakes the thread at once.
    stop: std::sync::mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

struct WatchShared {
    start: Instant,
    last_ms: AtomicU64,
    fired: AtomicBool,
}

impl Watchdog {
    fn start(pid: u32, limit: Duration) -> Watchdog {
        let shared = Arc::new(WatchShared {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            fired: AtomicBool::new(false),
        });
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let s = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            // Wakes every 100 ms to check progress, and at once when stopped.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(100))
            {
                let now = s.start.elapsed().as_millis() as u64;
                let idle = now.saturating_sub(s.last_ms.load(Ordering::Acquire));
                if idle > limit.as_millis() as u64 {
                    // The child is not reaped before the sender is dropped and this thread
                    // joined, so the pid is still ours.
                    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                    s.fired.store(true, Ordering::Release);
                    return;
                }
            }
        });
        Watchdog {
            shared,
            stop,
            thread,
        }
    }

    fn progress(&self) {
        let ms = self.shared.start.elapsed().as_millis() as u64;
        self.shared.last_ms.store(ms, Ordering::Release);
    }

    /// Stops the watchdog; returns whether it killed the child.
    fn stop(self) -> bool {
        drop(self.stop);
        let _ = self.thread.join();
        self.shared.fired.load(Ordering::Acquire)
    }
}

/// Reads a child's stderr on a thread, keeping its last [`process::STDERR_TAIL`] bytes.
fn spawn_tail(stderr: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    stderr.map(|mut err| {
        std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * process::STDERR_TAIL {
                    tail.drain(..tail.len() - process::STDERR_TAIL);
                }
            }
            tail
        })
    })
}

fn join_tail(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(script: &str, timeout: u64) -> (tempfile::TempDir, Rbd) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rbd");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let rbd = Rbd {
            program: path.to_string_lossy().into_owned(),
            global_args: vec!["--id".into(), "backup".into()],
            timeout: Some(Duration::from_secs(timeout)),
        };
        (dir, rbd)
    }

    #[test]
    fn snapshot_listings_parse_and_global_args_come_first() {
        let (_d, rbd) = fake(
            r#"[ "$1 $2" = "--id backup" ] || exit 9
echo '[{"id":14,"name":"s1","size":16777216,"protected":"false","timestamp":"x"}]'"#,
            5,
        );
        let snaps = rbd.snapshots("rbd", "img").unwrap();
        assert_eq!(
            snaps,
            [SnapInfo {
                id: 14,
                name: "s1".into()
            }]
        );
    }

    #[test]
    fn snap_rm_is_tried_first_and_a_failure_is_judged_by_listing() {
        // `snap rm` succeeds: one call, nothing listed.
        let (d, rbd) = fake(r#"echo "$3 $4" >> "$(dirname "$0")/calls""#, 5);
        assert!(rbd.snap_remove("p", "i", "s1").unwrap());
        let calls = std::fs::read_to_string(d.path().join("calls")).unwrap();
        assert_eq!(calls, "snap rm\n");
        // It fails and the snapshot is not listed: gone, not an error.
        let (_d, rbd) = fake(
            r#"[ "$4" = ls ] && { echo '[{"id":1,"name":"other"}]'; exit 0; }
echo 'rbd: failed to remove snapshot: (2) No such file or directory' >&2; exit 2"#,
            5,
        );
        assert!(!rbd.snap_remove("p", "i", "s1").unwrap());
        // It fails and the snapshot is still there: the failure stands.
        let (_d, rbd) = fake(
            r#"[ "$4" = ls ] && { echo '[{"id":1,"name":"s1"}]'; exit 0; }
echo 'rbd: snapshot is protected' >&2; exit 16"#,
            5,
        );
        let err = format!("{:#}", rbd.snap_remove("p", "i", "s1").unwrap_err());
        assert!(err.contains("snapshot is protected"), "{err}");
    }

    #[test]
    fn failures_and_hangs_are_errors_with_stderr() {
        let (_d, rbd) = fake("echo 'rbd: error opening image' >&2; exit 2", 5);
        let err = format!("{:#}", rbd.list_pool("p").unwrap_err());
        assert!(
            err.contains("error opening image") && err.contains("ls -l -p p"),
            "{err}"
        );
        let (_d, rbd) = fake("exec sleep 30", 1);
        let t = Instant::now();
        let err = format!("{:#}", rbd.list_pool("p").unwrap_err());
        assert!(err.contains("rbd-timeout"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
        // Closing stdout is not the end: a command that hangs after that is killed too.
        let (_d, rbd) = fake("exec >&-; exec sleep 30", 1);
        let t = Instant::now();
        let err = format!("{:#}", rbd.list_pool("p").unwrap_err());
        assert!(err.contains("did not finish within 1 s"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_stalled_export_is_killed_and_a_dropped_one_is_reaped() {
        let (_d, rbd) = fake("printf 'rbd diff v1\\n'; exec sleep 30", 1);
        let mut export = rbd.export_diff("p", "i", "s", None).unwrap();
        let t = Instant::now();
        let mut all = Vec::new();
        export.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"rbd diff v1\n");
        let err = format!("{:#}", export.finish().unwrap_err());
        assert!(err.contains("rbd-timeout"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));

        let (_d, rbd) = fake("exec sleep 30", 100);
        let export = rbd.export_diff("p", "i", "s", Some("a")).unwrap();
        let pid = export.child.id();
        drop(export);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "reaped");
    }
}
