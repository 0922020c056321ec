use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, Path::new("/etc/deltaic.conf"))
}

const MINIMAL: &str = "settings:\n  root: /backup/\n  backup-lv: vg/lv\n";

#[test]
fn defaults_are_the_originals() {
    let c = load(MINIMAL).unwrap();
    let s = &c.settings;
    assert_eq!(
        s.root,
        Path::new("/backup"),
        "trailing slash stripped (BUG-18)"
    );
    assert_eq!(s.df_warning, 5.0);
    assert_eq!(
        (s.gc_duplicate_days, s.gc_daily_weeks, s.gc_weekly_months),
        (14, 8, 12)
    );
    assert_eq!(s.gc_log_distinct_days, 60);
    assert_eq!(s.rsync_workers.get(), 1);
    assert_eq!(s.rsync_scrub_probability.value(), 0.0166);
    assert_eq!(s.coda_full_probability.value(), 0.143);
    assert_eq!(s.rsync_local_binary, "rsync");
    assert_eq!(s.snapshot_backend, SnapshotBackendKind::Lvm);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn empty_and_null_documents_get_a_clear_error() {
    for text in ["", "  \n", "null\n", "# nothing\n~\n"] {
        let err = load(text).unwrap_err().to_string();
        assert!(err.contains("/etc/deltaic.conf is empty"), "{err}");
    }
}

#[test]
fn zero_workers_is_rejected_with_its_line() {
    let err = load("settings:\n  root: /b\n  backup-lv: vg/lv\n  rsync-workers: 0\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/etc/deltaic.conf, line 4"), "{text}");
}

#[test]
fn out_of_range_probability_names_the_line() {
    let err = load("settings:\n  root: /b\n  backup-lv: vg/lv\n  rsync-scrub-probability: 2\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 4") && err.contains("outside 0..1"),
        "{err}"
    );
}

#[test]
fn lvm_backend_requires_backup_lv_but_dir_does_not() {
    let err = load("settings:\n  root: /b\n").unwrap_err().to_string();
    assert!(err.contains("settings.backup-lv"), "{err}");
    load("settings:\n  root: /b\n  snapshot-backend: dir\n").unwrap();
}

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let c =
        load("settings:\n  root: /b\n  backup-lv: vg/lv\n  rsync-worker: 2\nrsyn: {}\n").unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings.iter().any(|w| w.contains("line 4")
        && w.contains("settings.rsync-worker")
        && w.contains("did you mean `rsync-workers`")));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("`rsyn`") && w.contains("`rsync`"))
    );
}

#[test]
fn keys_of_later_sources_do_not_warn() {
    let c = load("settings:\n  root: /b\n  backup-lv: vg/lv\n  github-token: x\n  rgw-server: h\ngithub: {}\n")
        .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn colliding_aliases_are_rejected() {
    let text = format!(
        "{MINIMAL}rsync:\n  a.example.org:\n    mounts: [/]\n  a.example.net:\n    mounts: [/]\n"
    );
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("would both back up into rsync/a"), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn unsafe_aliases_and_relative_mounts_are_rejected() {
    for host in [
        "  h:\n    mounts: [/]\n    alias: ../x\n",
        "  h:\n    mounts: [/]\n    alias: a/b\n",
        "  h:\n    mounts: [etc]\n",
        "  h:\n    mounts: []\n",
        "  -oProxyCommand=x:\n    mounts: [/]\n",
    ] {
        let text = format!("{MINIMAL}rsync:\n{host}");
        assert!(load(&text).is_err(), "accepted:\n{text}");
    }
}

#[test]
fn a_null_host_is_an_error_not_a_crash() {
    let err = load(&format!("{MINIMAL}rsync:\n  h.example.org:\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/etc/deltaic.conf"), "{err}");
}

#[test]
fn durations_accept_units() {
    let c = load("settings:\n  root: /b\n  backup-lv: vg/lv\n  unit-timeout: 6h\n").unwrap();
    assert_eq!(c.settings.unit_timeout, Seconds(21600));
}

#[test]
fn the_example_config_loads_without_warnings() {
    let text = include_str!("../../example-config.yaml");
    let c = load(text).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn type_errors_name_the_key_and_an_empty_hook_is_refused() {
    let err = load("settings:\n  root: /b\n  backup-lv: vg/lv\n  rsync-timeout: -5\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 4: `rsync-timeout`: -5 is negative"),
        "{err}"
    );
    let err = load(&format!(
        "{MINIMAL}rsync:\n  h.example.org:\n    mounts: /etc\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`mounts`") && err.contains("needs a list"),
        "{err}"
    );
    let err = load(&format!(
        "{MINIMAL}rsync:\n  h.example.org:\n    mounts: [/]\n    pre:\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`pre`") && err.contains("has no command"),
        "{err}"
    );
}
