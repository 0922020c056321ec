//! Request URLs and `Link` pagination (github-rgw-rbd.md §1.4, §1.11).
//!
//! The first page of a listing is `<api>/<path>?<query>&per_page=100`; every later page is the
//! `rel="next"` target of the previous answer's `Link` header, followed exactly as given (GitHub
//! uses page numbers on some endpoints and opaque cursors on others). A `next` URL must stay on
//! the API's origin (scheme, host and port): the token is sent with every page, so a link to
//! another host is refused rather than followed.

use reqwest::Url;
use reqwest::header::{HeaderMap, LINK};

/// Page size of every listing (GitHub's maximum).
pub(crate) const PER_PAGE: &str = "100";

/// The absolute URL of `path` under `base`: `path` is relative to the API URL (`/repos/o/r`),
/// or an absolute URL on the API's origin (an object's `url` field). `query` pairs are appended.
pub(crate) fn api_url(base: &Url, path: &str, query: &[(&str, &str)]) -> Result<Url, String> {
    let mut url = if path.starts_with("http://") || path.starts_with("https://") {
        let url = Url::parse(path).map_err(|e| format!("{path}: not a URL: {e}"))?;
        if !same_origin(base, &url) {
            return Err(format!(
                "{url}: refusing a URL outside the API host {}",
                origin(base)
            ));
        }
        url
    } else {
        let joined = format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        Url::parse(&joined).map_err(|e| format!("{joined}: not a URL: {e}"))?
    };
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (key, value) in query {
            pairs.append_pair(key, value);
        }
    }
    Ok(url)
}

/// Whether two URLs share scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `scheme://host[:port]` of `url`, for messages.
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// The `rel="next"` target of every `Link` header in `headers`, if any.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(parse_link)
        .find(|(_, rels)| rels.iter().any(|r| r.eq_ignore_ascii_case("next")))
        .map(|(target, _)| target)
}

/// Parses one `Link` header value (RFC 8288): `<target>; rel="a b"; x=y, <target2>; rel=c`.
/// Returns each link's target and its relation types. Malformed parts are skipped: a link that
/// cannot be read is one that is not followed, and the listing then ends at that page, which the
/// caller sees as fewer items, never as a different host.
pub(crate) fn parse_link(value: &str) -> Vec<(String, Vec<String>)> {
    let mut links = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some(after_open) = rest.strip_prefix('<') else {
            break;
        };
        let Some(close) = after_open.find('>') else {
            break;
        };
        let target = after_open[..close].trim().to_string();
        rest = &after_open[close + 1..];
        let mut rels = Vec::new();
        // Parameters: `; name=value` or `; name="quoted, value"`, until a `,` outside quotes.
        loop {
            rest = rest.trim_start();
            let Some(after_semi) = rest.strip_prefix(';') else {
                break;
            };
            let after_semi = after_semi.trim_start();
            let name_end = after_semi.find(['=', ';', ',']).unwrap_or(after_semi.len());
            let name = after_semi[..name_end].trim();
            rest = &after_semi[name_end..];
            let mut param_value = String::new();
            if let Some(after_eq) = rest.strip_prefix('=') {
                let after_eq = after_eq.trim_start();
                if let Some(quoted) = after_eq.strip_prefix('"') {
                    let end = quoted.find('"').unwrap_or(quoted.len());
                    param_value = quoted[..end].to_string();
                    rest = quoted.get(end + 1..).unwrap_or("");
                } else {
                    let end = after_eq.find([';', ',']).unwrap_or(after_eq.len());
                    param_value = after_eq[..end].trim().to_string();
                    rest = &after_eq[end..];
                }
            }
            if name.eq_ignore_ascii_case("rel") {
                rels.extend(param_value.split_whitespace().map(str::to_string));
            }
        }
        links.push((target, rels));
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn parses_githubs_link_header() {
        let value = "<https://api.github.com/repositories/1/issues?page=2>; rel=\"next\", \
                     <https://api.github.com/repositories/1/issues?page=5>; rel=\"last\"";
        let links = parse_link(value);
        assert_eq!(links.len(), 2);
        assert_eq!(
            links[0].0,
            "https://api.github.com/repositories/1/issues?page=2"
        );
        assert_eq!(links[0].1, vec!["next"]);
        assert_eq!(links[1].1, vec!["last"]);
    }

    #[test]
    fn finds_next_among_several_headers_and_relation_lists() {
        let mut headers = HeaderMap::new();
        headers.append(
            LINK,
            HeaderValue::from_static("<https://h/x?page=1>; rel=\"prev first\""),
        );
        headers.append(
            LINK,
            HeaderValue::from_static("<https://h/x?a=1,2>; title=\"a; b, c\"; rel=\"last next\""),
        );
        assert_eq!(next_link(&headers).as_deref(), Some("https://h/x?a=1,2"));
    }

    #[test]
    fn no_next_on_the_last_page_or_garbage() {
        let mut headers = HeaderMap::new();
        assert_eq!(next_link(&headers), None);
        headers.insert(
            LINK,
            HeaderValue::from_static("<https://h/x?page=1>; rel=prev"),
        );
        assert_eq!(next_link(&headers), None);
        assert!(parse_link("garbage; rel=next").is_empty());
        assert!(parse_link("<unterminated; rel=next").is_empty());
    }

    #[test]
    fn api_urls_tolerate_slashes_and_stay_on_the_api_host() {
        let base = Url::parse("https://ghe.example/api/v3/").unwrap();
        let url = api_url(
            &base,
            "/orgs/o/repos",
            &[("type", "all"), ("per_page", "100")],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://ghe.example/api/v3/orgs/o/repos?type=all&per_page=100"
        );
        let base = Url::parse("https://ghe.example/api/v3").unwrap();
        let url = api_url(&base, "repos/o/r", &[]).unwrap();
        assert_eq!(url.as_str(), "https://ghe.example/api/v3/repos/o/r");
        let same = api_url(&base, "https://ghe.example/api/v3/teams/1", &[]).unwrap();
        assert_eq!(same.path(), "/api/v3/teams/1");
        let err = api_url(&base, "https://evil.example/api/v3/teams/1", &[]).unwrap_err();
        assert!(err.contains("outside the API host"), "{err}");
        let port = api_url(&base, "https://ghe.example:8443/x", &[]).unwrap_err();
        assert!(port.contains("outside"), "{port}");
    }
}
