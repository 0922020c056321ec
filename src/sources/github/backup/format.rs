//! The JSON files of the github layout (github-rgw-rbd.md §1.6, D4): each function turns a
//! GitHub REST object into the record the original wrote, byte for byte once serialised with
//! [`to_json`]. Timestamps become `YYYY-MM-DDTHH:MM:SS+00:00` (fractions dropped) and users
//! become their login, or `null` for a deleted ("ghost") account.
//!
//! Deliberate differences from the original, each documented in the module of its file:
//! * issues gain the key `assignees` (bug 5; the old key `assignee` stays), and `closed_by` is
//!   the actor of the last `closed` event instead of always `null` (bug 4). A file without
//!   `assignees` is therefore one written by the original ([`is_original_issue_format`]).
//! * new files: `labels.json`, `hooks.json`, `pulls/<n>/reviews.json`,
//!   `pulls/<n>/review-comments.json`.

use anyhow::{Context, anyhow};
use serde_json::{Map, Value, json};

/// Serialises like Python's `json.dumps(obj, sort_keys=True) + "\n"` (D4).
pub(super) fn to_json(value: &Value) -> String {
    let mut out = crate::sources::github::pyjson::dumps(value);
    out.push('\n');
    out
}

/// A GitHub timestamp (`2011-04-10T20:09:31Z`) in the original's form
/// (`2011-04-10T20:09:31+00:00`); `null` stays `null`. A string that does not parse is kept
/// as it is (the mtime code then reports it).
pub(super) fn timestamp(value: &Value) -> Value {
    match value.as_str().map(|s| s.parse::<jiff::Timestamp>()) {
        Some(Ok(ts)) => Value::String(ts.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()),
        _ => value.clone(),
    }
}

/// Epoch seconds of a timestamp in either form.
pub(super) fn epoch(value: &Value) -> anyhow::Result<i64> {
    let text = value
        .as_str()
        .ok_or_else(|| anyhow!("expected a timestamp, got {value}"))?;
    let ts: jiff::Timestamp = text
        .parse()
        .with_context(|| format!("unparsable timestamp {text:?}"))?;
    Ok(ts.as_second())
}

/// The `since` parameter for a point in time (`2011-04-10T20:09:31Z`).
pub(super) fn since_param(secs: i64) -> anyhow::Result<String> {
    Ok(jiff::Timestamp::from_second(secs)?
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string())
}

/// A user object as its login; `null` (a ghost) or a malformed user as `null`.
pub(super) fn login(user: &Value) -> Value {
    match user.get("login") {
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

/// `obj[key]`, or `null` when absent.
fn field(obj: &Value, key: &str) -> Value {
    obj.get(key).cloned().unwrap_or(Value::Null)
}

/// Builds an object from `(key, value)` pairs.
fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<String, Value>>(),
    )
}

fn list_of(value: &Value, f: impl Fn(&Value) -> Value) -> Value {
    Value::Array(
        value
            .as_array()
            .map(|items| items.iter().map(f).collect())
            .unwrap_or_default(),
    )
}

/// `info.json`: `description`, `has_issues`, `has_wiki`, `homepage`, `private`.
pub(super) fn repo_info(repo: &Value) -> Value {
    object([
        ("description", field(repo, "description")),
        ("has_issues", field(repo, "has_issues")),
        ("has_wiki", field(repo, "has_wiki")),
        ("homepage", field(repo, "homepage")),
        ("private", field(repo, "private")),
    ])
}

/// One entry of an issue's `comments`.
pub(super) fn issue_comment(c: &Value) -> Value {
    object([
        ("body", field(c, "body")),
        ("created_at", timestamp(&field(c, "created_at"))),
        ("updated_at", timestamp(&field(c, "updated_at"))),
        ("user", login(&field(c, "user"))),
    ])
}

/// One entry of an issue's `events`.
pub(super) fn issue_event(e: &Value) -> Value {
    object([
        ("actor", login(&field(e, "actor"))),
        ("commit_id", field(e, "commit_id")),
        ("created_at", timestamp(&field(e, "created_at"))),
        ("event", field(e, "event")),
    ])
}

/// `issues/<n>.json` from the issue and its (already converted) comments and events.
/// `closed_by`: the actor of the last `closed` event while the issue is closed (bug 4).
pub(super) fn issue(issue: &Value, comments: Vec<Value>, events: Vec<Value>) -> Value {
    let closed_by = if issue.get("state").and_then(Value::as_str) == Some("closed") {
        events
            .iter()
            .rev()
            .find(|e| e.get("event").and_then(Value::as_str) == Some("closed"))
            .map(|e| field(e, "actor"))
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let label_name = |l: &Value| match l {
        Value::String(_) => l.clone(),
        _ => field(l, "name"),
    };
    object([
        ("assignee", login(&field(issue, "assignee"))),
        ("assignees", list_of(&field(issue, "assignees"), login)),
        ("body", field(issue, "body")),
        ("closed_at", timestamp(&field(issue, "closed_at"))),
        ("closed_by", closed_by),
        ("comments", Value::Array(comments)),
        ("created_at", timestamp(&field(issue, "created_at"))),
        ("events", Value::Array(events)),
        ("labels", list_of(&field(issue, "labels"), label_name)),
        (
            "milestone",
            issue
                .get("milestone")
                .and_then(|m| m.get("number"))
                .cloned()
                .unwrap_or(Value::Null),
        ),
        ("number", field(issue, "number")),
        ("state", field(issue, "state")),
        ("title", field(issue, "title")),
        ("updated_at", timestamp(&field(issue, "updated_at"))),
        ("user", login(&field(issue, "user"))),
    ])
}

/// Whether an issue file was written by the original (it lacks the new key `assignees`): a
/// scrub that rewrites it counts a format upgrade, not a mismatch.
pub(super) fn is_original_issue_format(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v.as_object().map(|o| !o.contains_key("assignees")))
        .unwrap_or(false)
}

/// `milestones/<n>.json`.
pub(super) fn milestone(m: &Value) -> Value {
    object([
        ("created_at", timestamp(&field(m, "created_at"))),
        ("creator", login(&field(m, "creator"))),
        ("description", field(m, "description")),
        ("due_on", timestamp(&field(m, "due_on"))),
        ("state", field(m, "state")),
        ("title", field(m, "title")),
        ("updated_at", timestamp(&field(m, "updated_at"))),
    ])
}

/// One entry of `comments/<sha>.json`.
pub(super) fn commit_comment(c: &Value) -> Value {
    object([
        ("body", field(c, "body")),
        ("commit_id", field(c, "commit_id")),
        ("created_at", timestamp(&field(c, "created_at"))),
        ("line", field(c, "line")),
        ("path", field(c, "path")),
        ("position", field(c, "position")),
        ("updated_at", timestamp(&field(c, "updated_at"))),
        ("user", login(&field(c, "user"))),
    ])
}

/// `releases/<tag>/info.json` (`description` is the release `body`).
pub(super) fn release_info(r: &Value) -> Value {
    object([
        ("created_at", timestamp(&field(r, "created_at"))),
        ("description", field(r, "body")),
        ("draft", field(r, "draft")),
        ("name", field(r, "name")),
        ("published_at", timestamp(&field(r, "published_at"))),
        ("tag_name", field(r, "tag_name")),
    ])
}

/// What the backup needs of a release asset (kept in the listing cache, never written).
pub(super) fn asset(a: &Value) -> Value {
    object([
        ("content_type", field(a, "content_type")),
        ("id", field(a, "id")),
        ("name", field(a, "name")),
        ("size", field(a, "size")),
        ("updated_at", timestamp(&field(a, "updated_at"))),
        ("url", field(a, "url")),
    ])
}

/// One entry of `labels.json` (new).
pub(super) fn label(l: &Value) -> Value {
    object([
        ("color", field(l, "color")),
        ("description", field(l, "description")),
        ("name", field(l, "name")),
    ])
}

/// One entry of `hooks.json` (new): the configuration as the API shows it (secrets are
/// redacted by GitHub); delivery status (`last_response`) is left out so that deliveries do
/// not rewrite the file.
pub(super) fn hook(h: &Value) -> Value {
    object([
        ("active", field(h, "active")),
        ("config", field(h, "config")),
        ("created_at", timestamp(&field(h, "created_at"))),
        ("events", field(h, "events")),
        ("id", field(h, "id")),
        ("name", field(h, "name")),
        ("type", field(h, "type")),
        ("updated_at", timestamp(&field(h, "updated_at"))),
    ])
}

/// One entry of `pulls/<n>/reviews.json` (new).
pub(super) fn review(r: &Value) -> Value {
    object([
        ("body", field(r, "body")),
        ("commit_id", field(r, "commit_id")),
        ("id", field(r, "id")),
        ("state", field(r, "state")),
        ("submitted_at", timestamp(&field(r, "submitted_at"))),
        ("user", login(&field(r, "user"))),
    ])
}

/// One entry of `pulls/<n>/review-comments.json` (new).
pub(super) fn review_comment(c: &Value) -> Value {
    object([
        ("body", field(c, "body")),
        ("commit_id", field(c, "commit_id")),
        ("created_at", timestamp(&field(c, "created_at"))),
        ("diff_hunk", field(c, "diff_hunk")),
        ("id", field(c, "id")),
        ("in_reply_to_id", field(c, "in_reply_to_id")),
        ("line", field(c, "line")),
        ("original_commit_id", field(c, "original_commit_id")),
        ("original_line", field(c, "original_line")),
        ("path", field(c, "path")),
        ("pull_request_review_id", field(c, "pull_request_review_id")),
        ("side", field(c, "side")),
        ("start_line", field(c, "start_line")),
        ("start_side", field(c, "start_side")),
        ("updated_at", timestamp(&field(c, "updated_at"))),
        ("user", login(&field(c, "user"))),
    ])
}

/// One value of `teams.json`: `{members, permission, repos}`.
pub(super) fn team(permission: Value, members: Vec<Value>, repos: Vec<Value>) -> Value {
    json!({"members": members, "permission": permission, "repos": repos})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_json_dumps_format() {
        // Expected bytes from python3: json.dumps(obj, sort_keys=True) + "\n".
        let value = json!({
            "z": [1, -2, null, true, false],
            "a": {"b\u{7f}": "x\"y\\z\n\r\t\u{8}\u{c}\u{1}", "A": []},
            "é": "Café ☕ 😀 /",
            "e": {}
        });
        assert_eq!(
            to_json(&value),
            "{\"a\": {\"A\": [], \"b\\u007f\": \"x\\\"y\\\\z\\n\\r\\t\\b\\f\\u0001\"}, \
             \"e\": {}, \"z\": [1, -2, null, true, false], \
             \"\\u00e9\": \"Caf\\u00e9 \\u2615 \\ud83d\\ude00 /\"}\n"
        );
    }

    #[test]
    fn timestamps_and_users() {
        assert_eq!(
            timestamp(&json!("2011-04-10T20:09:31Z")),
            json!("2011-04-10T20:09:31+00:00")
        );
        assert_eq!(timestamp(&json!(null)), json!(null));
        assert_eq!(
            epoch(&json!("2011-04-10T20:09:31Z")).unwrap(),
            1_302_466_171
        );
        assert_eq!(
            epoch(&json!("2011-04-10T20:09:31+00:00")).unwrap(),
            1_302_466_171
        );
        assert!(epoch(&json!("yesterday")).is_err());
        assert_eq!(since_param(1_302_466_171).unwrap(), "2011-04-10T20:09:31Z");
        assert_eq!(
            login(&json!({"login": "octocat", "id": 1})),
            json!("octocat")
        );
        assert_eq!(login(&json!(null)), json!(null));
    }

    #[test]
    fn closed_by_is_the_last_closer_while_closed() {
        let events = vec![
            json!({"actor": "a", "event": "closed"}),
            json!({"actor": "b", "event": "reopened"}),
            json!({"actor": "c", "event": "closed"}),
            json!({"actor": "d", "event": "labeled"}),
        ];
        let closed = issue(&json!({"state": "closed"}), vec![], events.clone());
        assert_eq!(closed["closed_by"], json!("c"));
        let open = issue(&json!({"state": "open"}), vec![], events);
        assert_eq!(open["closed_by"], json!(null));
        assert!(!is_original_issue_format(to_json(&open).as_bytes()));
        assert!(is_original_issue_format(b"{\"assignee\": null}\n"));
    }
}
