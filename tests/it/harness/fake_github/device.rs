//! The OAuth device flow on the web host, as GitHub documents it ("Authorizing OAuth apps",
//! device flow): `POST /login/device/code` hands out a device code, `POST
//! /login/oauth/access_token` is polled with it until the token is granted or the flow fails.
//!
//! Parameters come as a form (the default) or JSON; answers are form-encoded unless the request
//! says `Accept: application/json`. Errors are 200 answers with an `error` field
//! (`authorization_pending`, `slow_down` with the new `interval`, `expired_token`,
//! `access_denied`, `incorrect_client_credentials`, `incorrect_device_code`,
//! `unsupported_grant_type`), as GitHub's OAuth endpoints do. What successive polls answer is
//! scripted by `State::device`; polling faster than a code's interval answers `slow_down`.

use super::control::DevicePoll;
use super::routes::{parse_query, plain};
use super::{Shared, lock};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::time::Instant;

/// The grant type of a device-code poll.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Where GitHub's device-flow errors point.
const ERROR_URI: &str = "https://docs.github.com/apps/oauth-apps/building-oauth-apps/\
                         authorizing-oauth-apps#device-flow";

/// Answers `POST /login/device/code` and `POST /login/oauth/access_token`.
pub fn handle(
    shared: &Shared,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Response {
    if method != Method::POST {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    }
    let params = parse_params(headers, body);
    let param = |k: &str| param(&params, k);
    let json_wanted = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let mut state = lock(&shared.state);
    let flow = &mut state.device;
    let answer = match path {
        "/login/device/code" => {
            if param("client_id") != flow.client_id {
                error(
                    "incorrect_client_credentials",
                    "The client_id is not valid.",
                )
            } else {
                let n = flow.grants.len() + 1;
                let device_code = format!("{:040x}", 0xdecade_u64 * 1_000_003 + n as u64);
                let user_code = format!("FAKE-{n:04}");
                flow.grants.push(super::control::DeviceGrant {
                    device_code: device_code.clone(),
                    user_code: user_code.clone(),
                    scope: param("scope").to_string(),
                    interval: flow.interval,
                    last_poll: None,
                    finished: None,
                    polls: 0,
                    issued: Instant::now(),
                });
                json!({
                    "device_code": device_code,
                    "user_code": user_code,
                    "verification_uri": format!("{}/login/device", shared.urls.web),
                    "expires_in": flow.expires_in,
                    "interval": flow.interval,
                })
            }
        }
        "/login/oauth/access_token" => {
            let token = state.token.clone();
            poll(&mut state.device, &token, &params)
        }
        _ => return plain(StatusCode::NOT_FOUND, "Not Found"),
    };
    respond(answer, json_wanted)
}

/// One poll of the token endpoint.
fn poll(flow: &mut super::control::DeviceFlow, token: &str, params: &Map<String, Value>) -> Value {
    let param = |k: &str| param(params, k);
    if param("client_id") != flow.client_id {
        return error(
            "incorrect_client_credentials",
            "The client_id is not valid.",
        );
    }
    if param("grant_type") != DEVICE_GRANT {
        return error("unsupported_grant_type", "The grant type is not supported.");
    }
    let increment = flow.slow_down_increment;
    let expires_in = flow.expires_in;
    let Some(grant) = flow
        .grants
        .iter_mut()
        .find(|g| g.device_code == param("device_code"))
    else {
        return error(
            "incorrect_device_code",
            "The device_code provided is not valid.",
        );
    };
    grant.polls += 1;
    if let Some(reason) = grant.finished {
        return error(reason, "This device code can no longer be used.");
    }
    if grant.issued.elapsed().as_secs() >= expires_in {
        grant.finished = Some("expired_token");
        return error("expired_token", "The device_code has expired.");
    }
    let now = Instant::now();
    let too_fast = grant
        .last_poll
        .is_some_and(|last| now.duration_since(last).as_secs() < grant.interval);
    grant.last_poll = Some(now);
    let step = if too_fast {
        DevicePoll::SlowDown
    } else {
        flow.script.pop_front().unwrap_or(DevicePoll::Grant)
    };
    match step {
        DevicePoll::Pending => error(
            "authorization_pending",
            "The authorization request is still pending.",
        ),
        DevicePoll::SlowDown => {
            grant.interval += increment;
            let mut v = error(
                "slow_down",
                "Too many requests have been made in the same timeframe.",
            );
            v["interval"] = json!(grant.interval);
            v
        }
        DevicePoll::Expired => {
            grant.finished = Some("expired_token");
            error("expired_token", "The device_code has expired.")
        }
        DevicePoll::Denied => {
            grant.finished = Some("access_denied");
            error("access_denied", "The authorization request was denied.")
        }
        DevicePoll::Grant => {
            grant.finished = Some("incorrect_device_code");
            let scope: Vec<&str> = grant
                .scope
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .collect();
            json!({"access_token": token, "token_type": "bearer", "scope": scope.join(",")})
        }
    }
}

/// A string parameter ("" when absent).
fn param<'a>(params: &'a Map<String, Value>, key: &str) -> &'a str {
    params.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An OAuth error answer.
fn error(code: &str, description: &str) -> Value {
    json!({"error": code, "error_description": description, "error_uri": ERROR_URI})
}

/// Request parameters from a JSON or form body (or the query string of the body).
fn parse_params(headers: &HeaderMap, body: &[u8]) -> Map<String, Value> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    if is_json {
        return serde_json::from_slice::<Map<String, Value>>(body).unwrap_or_default();
    }
    parse_query(&String::from_utf8_lossy(body))
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

/// Encodes an answer as JSON or as a form, as the client asked.
fn respond(answer: Value, json_wanted: bool) -> Response {
    let (body, content_type) = if json_wanted {
        (answer.to_string(), "application/json; charset=utf-8")
    } else {
        let mut url = reqwest::Url::parse("http://form.invalid/").expect("URL");
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in answer.as_object().into_iter().flatten() {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                pairs.append_pair(k, &text);
            }
        }
        (
            url.query().unwrap_or("").to_string(),
            "application/x-www-form-urlencoded; charset=utf-8",
        )
    };
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
