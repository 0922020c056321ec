//! A private sshd on 127.0.0.1 for one test (test-infra.md §1), and an ssh client setup that
//! reaches it under real-looking host names.
//!
//! [`Sshd::start`] generates a host key and a client key in a temporary directory, writes an
//! `sshd_config` (key authentication only, root login allowed, no PAM), and runs `sshd -D` on a
//! free port as a child process, killed and reaped on drop. The client side is an ssh config
//! that maps `host1.example.test` and `host2.example.test` to that port with the client key and
//! a private known_hosts file, plus a wrapper script ([`Sshd::ssh_program`]) that runs
//! `ssh -F <that config> "$@"`. Point `DELTAIC_SSH` at the wrapper: deltaic's own ssh options
//! then reach the real ssh unchanged. (OpenSSH reads `~/.ssh/config` from the password
//! database, not from `$HOME`, so a temporary HOME cannot carry the client config.)

use super::require;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The sshd binary.
const SSHD: &str = "/usr/sbin/sshd";
/// Host names the client config maps to the private sshd.
pub const HOSTS: [&str; 2] = ["host1.example.test", "host2.example.test"];

/// A running private sshd; killed when dropped.
pub struct Sshd {
    dir: TempDir,
    child: Child,
    port: u16,
}

impl Sshd {
    /// Starts an sshd for the calling test, or returns `None` after a loud skip when sshd, ssh,
    /// ssh-keygen or rsync is missing (a panic under `DELTAIC_TEST_REQUIRE_ALL=1`).
    pub fn start() -> Option<Sshd> {
        let tools = [SSHD, "ssh", "ssh-keygen", "rsync"];
        let missing: Vec<&str> = tools
            .iter()
            .copied()
            .filter(|t| !require::program_exists(t))
            .collect();
        let what = format!("sshd (missing: {})", missing.join(", "));
        if !require::service(&what, missing.is_empty()) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("deltaic-sshd")
            .tempdir()
            .expect("tempdir");
        for key in ["hostkey", "clientkey"] {
            let path = dir.path().join(key);
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(&path));
        }
        fs::copy(
            dir.path().join("clientkey.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        fs::set_permissions(
            dir.path().join("authorized_keys"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        // The privilege-separation directory sshd insists on.
        let _ = fs::create_dir_all("/run/sshd");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn_sshd(dir.path(), port) {
                Ok(child) => {
                    let sshd = Sshd { dir, child, port };
                    sshd.write_client_files();
                    return Some(sshd);
                }
                Err(e) => last_error = e,
            }
        }
        panic!("sshd did not start: {last_error}");
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The ssh wrapper to put in `DELTAIC_SSH`.
    pub fn ssh_program(&self) -> PathBuf {
        self.dir.path().join("ssh")
    }

    /// A known_hosts line that trusts this server's host key.
    pub fn known_hosts_line(&self) -> String {
        let key = fs::read_to_string(self.dir.path().join("hostkey.pub")).unwrap();
        let mut words = key.split_whitespace();
        let (kind, blob) = (words.next().unwrap(), words.next().unwrap());
        format!("[127.0.0.1]:{} {kind} {blob}\n", self.port)
    }

    fn write_client_files(&self) {
        let d = self.dir.path();
        let config = format!(
            "Host {hosts}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  \
             IdentityFile {d}/clientkey\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
             LogLevel ERROR\n",
            hosts = HOSTS.join(" "),
            port = self.port,
            d = d.display(),
        );
        fs::write(d.join("ssh_config"), config).unwrap();
        fs::write(d.join("known_hosts"), "").unwrap();
        let wrapper = format!(
            "#!/bin/sh\nexec ssh -F '{}/ssh_config' \"$@\"\n",
            d.display()
        );
        fs::write(d.join("ssh"), wrapper).unwrap();
        fs::set_permissions(d.join("ssh"), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sshd -D` on `port` and waits until it accepts connections.
fn spawn_sshd(dir: &Path, port: u16) -> Result<Child, String> {
    let d = dir.display();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile none\n\
         AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
         StrictModes no\nSubsystem sftp internal-sftp\n"
    );
    fs::write(dir.join("sshd_config"), config).unwrap();
    let mut child = Command::new(SSHD)
        .arg("-D")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .arg("-E")
        .arg(dir.join("sshd.log"))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("{SSHD}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
            return Err(format!("sshd exited with {status}: {log}"));
        }
        // Wait for the log line rather than probing the port: a probe connection would leave
        // an sshd child behind that may outlive a quick test and its temporary directory.
        let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
        if log.contains(&format!("Server listening on 127.0.0.1 port {port}")) {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("sshd did not listen on port {port} within 10 s"))
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
