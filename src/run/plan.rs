//! Tonight's plan: every source's units, in run order (core-rsync-coda.md §4.2 step 2, §4.3).
//!
//! Planning is pure apart from what a source itself does (the github source will list
//! repositories over the network), and the random extras (scrubs, full dumps) come from an
//! injected RNG. A source that cannot be planned, by error or even by panic, is recorded as a
//! [`PlanningError`] and the other sources still run (BUG-5: the original aborted the whole run
//! after the earlier sources had started, and took no snapshot).

use crate::config::Config;
use crate::sources::{Source, Unit, UnitRoot};
use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};

/// One source's share of the run: its units and how many may run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePlan {
    /// The source label (`rsync`).
    pub label: &'static str,
    /// Size of the source's worker pool (`<label>-workers`, at least 1: BUG-3).
    pub workers: NonZeroUsize,
    /// Its units, in run order.
    pub units: Vec<Unit>,
}

/// A source whose units could not be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanningError {
    /// The source label.
    pub source: &'static str,
    /// What went wrong, with its context chain.
    pub message: String,
}

impl fmt::Display for PlanningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

/// The units of a run, grouped by source, and the sources that could not be planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The sources that were planned, in registration order.
    pub sources: Vec<SourcePlan>,
    /// The sources that could not be planned.
    pub errors: Vec<PlanningError>,
    /// Set by [`Plan::select`]: what the run was narrowed to, and what of the full plan it
    /// leaves out (which still decides whether the tree is complete).
    pub selection: Option<Selection>,
}

/// What `--only` kept out of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The units asked for, as given.
    pub only: Vec<UnitRoot>,
    /// The planned units not asked for.
    pub left_out: Vec<UnitRoot>,
    /// The planning errors of sources none of whose units were asked for.
    pub left_out_errors: Vec<PlanningError>,
}

/// Plans every source in `sources` (normally [`crate::sources::ALL_SOURCES`]).
pub fn plan(config: &Config, sources: &[&dyn Source], rng: &mut dyn rand::Rng) -> Plan {
    let mut plan = Plan::default();
    for source in sources {
        let label = source.label();
        let planned =
            panic::catch_unwind(AssertUnwindSafe(|| source.plan_units(config, &mut *rng)));
        match planned {
            Ok(Ok(units)) => plan.sources.push(SourcePlan { label, workers: source.workers(config), units }),
            Ok(Err(err)) => plan.errors.push(PlanningError { source: label, message: format!("{err:#}") }),
            Err(_) => plan.errors.push(PlanningError {
                source: label,
                message: "deltaic crashed while planning this source's units (see the panic message above)"
                    .into(),
            }),
        }
    }
    plan
}

impl Plan {
    /// Every planned unit, in plan order.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.sources.iter().flat_map(|s| &s.units)
    }

    /// Every unit of the full plan, those [`Plan::select`] left out included.
    pub fn full_plan_units(&self) -> impl Iterator<Item = &UnitRoot> {
        let left_out = self.selection.iter().flat_map(|s| &s.left_out);
        self.units().map(|u| &u.root).chain(left_out)
    }

    /// Whether some source of the full plan could not be planned, selected or not.
    pub fn full_plan_failed(&self) -> bool {
        !self.errors.is_empty()
            || self
                .selection
                .as_ref()
                .is_some_and(|s| !s.left_out_errors.is_empty())
    }

    /// Keeps only the units named in `only` (by unit root, e.g. `rsync/octopus`); no-op when
    /// `only` is empty.
    ///
    /// Planning errors of sources none of whose units were asked for no longer concern this
    /// run: they are removed from the plan and returned, for the caller to show as warnings.
    ///
    /// Errors: a name matches no planned unit; the message lists the valid units, and the
    /// sources that could not be planned (their units are unknown).
    pub fn select(&mut self, only: &[String]) -> anyhow::Result<Vec<PlanningError>> {
        if only.is_empty() {
            return Ok(Vec::new());
        }
        let known: BTreeSet<&str> = self.units().map(|u| u.root.as_str()).collect();
        let unknown: Vec<&str> = only
            .iter()
            .map(String::as_str)
            .filter(|name| !known.contains(name))
            .collect();
        if !unknown.is_empty() {
            let valid = if known.is_empty() {
                "none are configured".to_string()
            } else {
                known.iter().copied().collect::<Vec<_>>().join(", ")
            };
            let mut message = format!(
                "unknown unit{} {} in --only; valid units: {valid}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for error in &self.errors {
                message.push_str(&format!(
                    "\n(the units of {} are unknown: {})",
                    error.source, error.message
                ));
            }
            anyhow::bail!(message);
        }
        let mut selection = Selection {
            only: Vec::new(),
            left_out: Vec::new(),
            left_out_errors: std::mem::take(&mut self.errors),
        };
        for source in &mut self.sources {
            let (kept, left_out): (Vec<Unit>, Vec<Unit>) = std::mem::take(&mut source.units)
                .into_iter()
                .partition(|u| only.iter().any(|name| name == u.root.as_str()));
            source.units = kept;
            selection
                .left_out
                .extend(left_out.into_iter().map(|u| u.root));
        }
        selection.only = only
            .iter()
            .filter_map(|name| UnitRoot::try_from(name.clone()).ok())
            .collect();
        let ignored = selection.left_out_errors.clone();
        self.selection = Some(selection);
        Ok(ignored)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sources::UnitRoot;
    use rand::SeedableRng;

    /// A source with fixed units, or one that fails to plan.
    pub(crate) struct FakeSource {
        pub label: &'static str,
        pub units: Result<Vec<&'static str>, &'static str>,
        pub workers: usize,
    }

    impl Source for FakeSource {
        fn label(&self) -> &'static str {
            self.label
        }
        fn workers(&self, _config: &Config) -> NonZeroUsize {
            NonZeroUsize::new(self.workers).unwrap()
        }
        fn plan_units(
            &self,
            _config: &Config,
            _rng: &mut dyn rand::Rng,
        ) -> anyhow::Result<Vec<Unit>> {
            match &self.units {
                Ok(names) => Ok(names
                    .iter()
                    .map(|n| Unit {
                        root: UnitRoot::try_from(n.to_string()).unwrap(),
                        backup_args: vec![self.label.into(), "backup".into(), n.to_string()],
                    })
                    .collect()),
                Err("panic") => panic!("planning blew up"),
                Err(message) => {
                    Err(anyhow::anyhow!("{message}")).map_err(|e| e.context("listing repositories"))
                }
            }
        }
    }

    pub(crate) fn config(root: &std::path::Path) -> Config {
        let text = format!(
            "settings:\n  root: {}\n  snapshot-backend: dir\n",
            root.display()
        );
        Config::from_yaml(&text, std::path::Path::new("/etc/deltaic.conf")).unwrap()
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.units().map(|u| u.root.as_str()).collect()
    }

    #[test]
    fn a_source_that_cannot_be_planned_is_recorded_and_the_others_are_kept() {
        let a = FakeSource {
            label: "coda",
            units: Ok(vec!["coda/s/v"]),
            workers: 1,
        };
        let b = FakeSource {
            label: "github",
            units: Err("HTTP 502"),
            workers: 1,
        };
        let c = FakeSource {
            label: "rbd",
            units: Err("panic"),
            workers: 1,
        };
        let d = FakeSource {
            label: "rsync",
            units: Ok(vec!["rsync/a", "rsync/b"]),
            workers: 3,
        };
        let plan = plan(
            &config(std::path::Path::new("/b")),
            &[&a, &b, &c, &d],
            &mut rng(),
        );
        assert_eq!(names(&plan), ["coda/s/v", "rsync/a", "rsync/b"]);
        assert_eq!(plan.sources[1].workers.get(), 3);
        assert_eq!(plan.errors.len(), 2);
        assert_eq!(
            plan.errors[0].to_string(),
            "github: listing repositories: HTTP 502"
        );
        assert_eq!(plan.errors[1].source, "rbd");
    }

    #[test]
    fn the_real_sources_plan_from_the_config() {
        let text = "settings:\n  root: /b\n  snapshot-backend: dir\n  rsync-scrub-probability: 1\n\
                    rsync:\n  z.example.org: {mounts: [/]}\n  a.example.org: {mounts: [/], alias: m}\n";
        let config = Config::from_yaml(text, std::path::Path::new("/etc/deltaic.conf")).unwrap();
        let plan = plan(&config, crate::sources::ALL_SOURCES, &mut rng());
        assert!(plan.errors.is_empty());
        assert_eq!(names(&plan), ["rsync/m", "rsync/z"]);
        let units: Vec<&Unit> = plan.units().collect();
        assert_eq!(
            units[0].backup_args,
            ["rsync", "backup", "a.example.org", "--scrub"]
        );
    }

    #[test]
    fn select_keeps_the_named_units_and_drops_unrelated_planning_errors() {
        let mut plan = Plan {
            sources: vec![SourcePlan {
                label: "rsync",
                workers: NonZeroUsize::MIN,
                units: ["rsync/a", "rsync/b", "rsync/c"]
                    .iter()
                    .map(|n| Unit {
                        root: UnitRoot::try_from(n.to_string()).unwrap(),
                        backup_args: vec![],
                    })
                    .collect(),
            }],
            errors: vec![PlanningError {
                source: "github",
                message: "down".into(),
            }],
            selection: None,
        };
        let mut unchanged = plan.clone();
        assert_eq!(unchanged.select(&[]).unwrap(), vec![]);
        assert_eq!(unchanged, plan);

        assert!(plan.full_plan_failed());
        let dropped = plan.select(&["rsync/c".into(), "rsync/a".into()]).unwrap();
        assert_eq!(names(&plan), ["rsync/a", "rsync/c"]);
        assert_eq!(dropped.len(), 1);
        assert!(plan.errors.is_empty());
        // What was left out still belongs to the full plan, which completeness is judged on.
        let selection = plan.selection.clone().unwrap();
        assert_eq!(selection.only, [unit_root("rsync/c"), unit_root("rsync/a")]);
        assert_eq!(selection.left_out, [unit_root("rsync/b")]);
        assert_eq!(selection.left_out_errors, dropped);
        let full: Vec<&str> = plan.full_plan_units().map(UnitRoot::as_str).collect();
        assert_eq!(full, ["rsync/a", "rsync/c", "rsync/b"]);
        assert!(plan.full_plan_failed(), "github could not be planned");
    }

    fn unit_root(name: &str) -> UnitRoot {
        UnitRoot::try_from(name.to_string()).unwrap()
    }

    #[test]
    fn select_rejects_unknown_units_and_lists_the_valid_ones() {
        let a = FakeSource {
            label: "rsync",
            units: Ok(vec!["rsync/a", "rsync/b"]),
            workers: 1,
        };
        let b = FakeSource {
            label: "github",
            units: Err("HTTP 502"),
            workers: 1,
        };
        let mut plan = plan(&config(std::path::Path::new("/b")), &[&a, &b], &mut rng());
        let err = plan
            .select(&["rsync/a".into(), "rsync/x".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown unit `rsync/x`"), "{err}");
        assert!(err.contains("valid units: rsync/a, rsync/b"), "{err}");
        assert!(
            err.contains("github are unknown: listing repositories: HTTP 502"),
            "{err}"
        );
    }
}
