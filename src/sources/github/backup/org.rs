//! The organisation unit (`ROOT/github/<org>/@organization`): `teams.json`, keyed by team
//! name, each `{members: [logins], permission, repos: [names]}` (§1.6, §1.11: through
//! `/orgs/<org>/teams/<slug>/members` and `/repos`), and, new, `hooks.json` with the
//! organisation's hooks (admin only; skipped with an info line otherwise).
//!
//! Every listing is conditional (the team listing and each team's members and repositories keep
//! their own page caches), so an unchanged organisation costs one 304 per listing.

use super::{Failures, Options, Summary, Unit, format};
use crate::sources::github::ORG_UNIT;
use crate::sources::github::api::Api;
use anyhow::Context;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Backs up the organisation unit of `org` under `root`.
pub async fn backup_org<A: Api>(
    api: &A,
    root: &Path,
    org: &str,
    opts: Options,
) -> anyhow::Result<Summary> {
    let mut unit = Unit::new(api, root, org, ORG_UNIT, opts)?;
    unit.store.sweep_temp_files(&[])?;
    let mut failures = Failures::default();
    failures.record(teams(&mut unit, org).await)?;
    failures.record(unit.hooks(&format!("/orgs/{org}/hooks")).await)?;
    failures
        .finish()
        .with_context(|| format!("backing up organisation {org}"))?;
    Ok(unit.store.summary)
}

/// `teams.json`.
async fn teams<A: Api>(unit: &mut Unit<'_, A>, org: &str) -> anyhow::Result<()> {
    let mut cache = unit.cache.load("teams");
    let teams = unit
        .list(&format!("/orgs/{org}/teams"), &[], &mut cache.pages, &|t| {
            json!({
                "name": t.get("name").cloned().unwrap_or(Value::Null),
                "slug": t.get("slug").cloned().unwrap_or(Value::Null),
                "permission": t.get("permission").cloned().unwrap_or(Value::Null),
            })
        })
        .await?;
    let mut children = BTreeMap::new();
    let mut out = Map::new();
    for team in &teams {
        unit.store.summary.items += 1;
        let team = &team.summary;
        let (Some(name), Some(slug)) = (team["name"].as_str(), team["slug"].as_str()) else {
            anyhow::bail!("/orgs/{org}/teams: a team without name or slug: {team}");
        };
        let mut lists = Vec::new();
        for (kind, key) in [("members", "login"), ("repos", "name")] {
            let cache_key = format!("{kind}/{slug}");
            let mut pages = cache.children.remove(&cache_key).unwrap_or_default();
            let items = unit
                .list(
                    &format!("/orgs/{org}/teams/{slug}/{kind}"),
                    &[],
                    &mut pages,
                    &|v| v.get(key).cloned().unwrap_or(Value::Null),
                )
                .await?;
            children.insert(cache_key, pages);
            lists.push(items.into_iter().map(|i| i.summary).collect::<Vec<_>>());
        }
        let repos = lists.pop().unwrap_or_default();
        let members = lists.pop().unwrap_or_default();
        out.insert(
            name.to_string(),
            format::team(team["permission"].clone(), members, repos),
        );
    }
    unit.store
        .write_file(Path::new("teams.json"), &Value::Object(out))?;
    // Teams that are gone lose their caches.
    cache.children = children;
    unit.cache.save("teams", &cache)
}
