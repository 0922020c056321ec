//! The saved ACL and CORS XML bodies (github-rgw-rbd.md §2.4), read back for restore: a small
//! element tree over `xmlparser`, then the SDK's types. Namespaces are ignored (local names
//! only), as S3 documents use one default namespace plus `xsi:type` on grantees.

use anyhow::{Context, anyhow, bail};
use aws_sdk_s3::types::{
    AccessControlPolicy, CorsConfiguration, CorsRule, Grant, Grantee, Owner, Permission, Type,
};

/// One XML element: local name, attributes by local name, children and direct text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (prefix dropped).
    pub name: String,
    /// Attributes (local name, unescaped value).
    pub attrs: Vec<(String, String)>,
    /// Child elements in order.
    pub children: Vec<Element>,
    /// Concatenated direct text, unescaped.
    pub text: String,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child named `name`.
    pub fn text_of(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_string())
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a document into its root element.
pub fn parse(text: &str) -> anyhow::Result<Element> {
    use xmlparser::{ElementEnd, Token, Tokenizer};
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    for token in Tokenizer::from(text) {
        match token.context("malformed XML")? {
            Token::ElementStart { local, .. } => stack.push(Element {
                name: local.to_string(),
                ..Element::default()
            }),
            Token::Attribute { local, value, .. } => {
                if let Some(top) = stack.last_mut() {
                    top.attrs.push((local.to_string(), unescape(&value)?));
                }
            }
            Token::ElementEnd { end, .. } => match end {
                ElementEnd::Open => {}
                ElementEnd::Close(..) | ElementEnd::Empty => {
                    let done = stack.pop().ok_or_else(|| anyhow!("unbalanced XML"))?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => root = Some(done),
                    }
                }
            },
            Token::Text { text } => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&unescape(&text)?);
                }
            }
            Token::Cdata { text, .. } => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            _ => {}
        }
    }
    root.ok_or_else(|| anyhow!("no XML element"))
}

fn unescape(text: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find(';')
            .ok_or_else(|| anyhow!("unterminated XML entity"))?;
        let entity = &rest[i + 1..i + end];
        let ch = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| anyhow!("unknown XML entity &{entity};"))?
            }
        };
        out.push(ch);
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The owner id of a saved AccessControlPolicy (`Owner/ID`).
pub fn acl_owner(xml: &str) -> anyhow::Result<String> {
    let root = parse(xml)?;
    root.child("Owner")
        .and_then(|o| o.text_of("ID"))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| anyhow!("the ACL names no Owner/ID"))
}

/// A saved AccessControlPolicy as the SDK's type, for `PUT ?acl`.
pub fn acl_policy(xml: &str) -> anyhow::Result<AccessControlPolicy> {
    let root = parse(xml)?;
    if root.name != "AccessControlPolicy" {
        bail!("not an AccessControlPolicy document (root <{}>)", root.name);
    }
    let owner = root.child("Owner").map(|o| {
        Owner::builder()
            .set_id(o.text_of("ID"))
            .set_display_name(o.text_of("DisplayName"))
            .build()
    });
    let mut grants = Vec::new();
    for grant in root
        .child("AccessControlList")
        .into_iter()
        .flat_map(|l| l.all("Grant"))
    {
        let g = grant
            .child("Grantee")
            .ok_or_else(|| anyhow!("a Grant without Grantee"))?;
        let kind = g
            .attr("type")
            .ok_or_else(|| anyhow!("a Grantee without xsi:type"))?;
        let grantee = Grantee::builder()
            .r#type(Type::from(kind))
            .set_id(g.text_of("ID"))
            .set_display_name(g.text_of("DisplayName"))
            .set_uri(g.text_of("URI"))
            .set_email_address(g.text_of("EmailAddress"))
            .build()
            .context("building a grantee")?;
        let permission = grant
            .text_of("Permission")
            .ok_or_else(|| anyhow!("a Grant without Permission"))?;
        grants.push(
            Grant::builder()
                .grantee(grantee)
                .permission(Permission::from(permission.as_str()))
                .build(),
        );
    }
    Ok(AccessControlPolicy::builder()
        .set_owner(owner)
        .set_grants(Some(grants))
        .build())
}

/// A saved CORSConfiguration as the SDK's type, for `PUT ?cors`.
pub fn cors_configuration(xml: &str) -> anyhow::Result<CorsConfiguration> {
    let root = parse(xml)?;
    if root.name != "CORSConfiguration" {
        bail!("not a CORSConfiguration document (root <{}>)", root.name);
    }
    let texts = |rule: &Element, name: &str| -> Option<Vec<String>> {
        let v: Vec<String> = rule.all(name).map(|e| e.text.trim().to_string()).collect();
        (!v.is_empty()).then_some(v)
    };
    let mut rules = Vec::new();
    for rule in root.all("CORSRule") {
        let max_age = match rule.text_of("MaxAgeSeconds") {
            Some(t) => Some(t.parse::<i32>().context("MaxAgeSeconds")?),
            None => None,
        };
        rules.push(
            CorsRule::builder()
                .set_id(rule.text_of("ID"))
                .set_allowed_headers(texts(rule, "AllowedHeader"))
                .set_allowed_methods(texts(rule, "AllowedMethod"))
                .set_allowed_origins(texts(rule, "AllowedOrigin"))
                .set_expose_headers(texts(rule, "ExposeHeader"))
                .set_max_age_seconds(max_age)
                .build()
                .context("building a CORS rule")?,
        );
    }
    CorsConfiguration::builder()
        .set_cors_rules(Some(rules))
        .build()
        .context("building the CORS configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACL: &str = r#"<?xml version="1.0" encoding="UTF-8"?><AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>alice</ID><DisplayName>Alice &amp; Co</DisplayName></Owner><AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>alice</ID><DisplayName>Alice</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>"#;

    #[test]
    fn an_acl_reads_back_with_owner_and_grants() {
        assert_eq!(acl_owner(ACL).unwrap(), "alice");
        let policy = acl_policy(ACL).unwrap();
        let owner = policy.owner().unwrap();
        assert_eq!(owner.display_name(), Some("Alice & Co"));
        let grants = policy.grants();
        assert_eq!(grants.len(), 2);
        assert_eq!(grants[0].permission(), Some(&Permission::FullControl));
        assert_eq!(grants[0].grantee().unwrap().r#type(), &Type::CanonicalUser);
        assert_eq!(
            grants[1].grantee().unwrap().uri(),
            Some("http://acs.amazonaws.com/groups/global/AllUsers")
        );
        assert!(acl_owner("<AccessControlPolicy/>").is_err());
        assert!(acl_policy("<x>").is_err());
    }

    #[test]
    fn a_cors_configuration_reads_back() {
        let xml = "<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedOrigin>https://a.example</AllowedOrigin><AllowedHeader>*</AllowedHeader><MaxAgeSeconds>300</MaxAgeSeconds></CORSRule></CORSConfiguration>";
        let cors = cors_configuration(xml).unwrap();
        let rule = &cors.cors_rules()[0];
        assert_eq!(rule.allowed_methods(), ["GET", "PUT"]);
        assert_eq!(rule.allowed_origins(), ["https://a.example"]);
        assert_eq!(rule.max_age_seconds(), Some(300));
        assert!(rule.expose_headers().is_empty());
    }

    #[test]
    fn entities_unescape() {
        assert_eq!(unescape("a&lt;b&#x41;&#66;").unwrap(), "a<bAB");
        assert!(unescape("&bogus;").is_err());
    }
}
