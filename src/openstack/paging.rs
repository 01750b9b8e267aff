//! Following OpenStack pagination, and building request paths.
//!
//! Next-page links are absolute URLs built by the service from its own idea of its host name,
//! which behind a proxy is often wrong (an internal name, http instead of https). Only their
//! query (the filters plus `marker`) is kept and sent to the endpoint the catalog gave us.

use reqwest::Url;
use serde_json::Value;

/// How a list call says that there is more.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Paging {
    /// Nova, Cinder, Neutron: `"<key>_links": [{"rel": "next", "href": ...}]`.
    Links(&'static str),
    /// Glance: `"next": "/v2/images?marker=..."`.
    GlanceNext,
    /// A single answer holds everything.
    Single,
}

/// The `href` of the `rel: next` link of a `*_links` array.
pub(crate) fn next_link(links: Option<&Value>) -> Option<&str> {
    links?
        .as_array()?
        .iter()
        .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))?
        .get("href")?
        .as_str()
}

/// Where the next page is, as a query, given one page of a list answer.
pub(crate) fn next_query(page: &Value, paging: Paging) -> Option<Vec<(String, String)>> {
    let href = match paging {
        Paging::Links(key) => next_link(page.get(key))?,
        Paging::GlanceNext => page.get("next")?.as_str()?,
        Paging::Single => return None,
    };
    query_of(href)
}

/// The query pairs of an absolute or relative link; None when it has none (no way forward).
pub(crate) fn query_of(href: &str) -> Option<Vec<(String, String)>> {
    let base = Url::parse("http://base.invalid/").ok()?;
    let url = base.join(href).ok()?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.is_empty() { None } else { Some(pairs) }
}

/// One path segment, percent-encoded: names (stacks, containers, objects, keypairs) may hold
/// spaces, `?` or `#`.
pub(crate) fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A Swift object name as a path: each `/`-separated part encoded, the slashes kept.
pub(crate) fn object_path(name: &str) -> String {
    name.split('/').map(seg).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nova_links() {
        let page = json!({
            "servers": [{"id": "a"}],
            "servers_links": [
                {"rel": "next", "href": "http://internal:8774/v2.1/p/servers/detail?limit=1&marker=a&name=b%20c"}
            ]
        });
        assert_eq!(
            next_query(&page, Paging::Links("servers_links")),
            Some(vec![
                ("limit".into(), "1".into()),
                ("marker".into(), "a".into()),
                ("name".into(), "b c".into()),
            ])
        );
        assert_eq!(next_query(&page, Paging::Links("flavors_links")), None);
        let last = json!({"servers": [], "servers_links": [{"rel": "self", "href": "x?marker=1"}]});
        assert_eq!(next_query(&last, Paging::Links("servers_links")), None);
    }

    #[test]
    fn glance_next() {
        let page = json!({"images": [], "first": "/v2/images", "next": "/v2/images?marker=42&status=active"});
        assert_eq!(
            next_query(&page, Paging::GlanceNext),
            Some(vec![
                ("marker".into(), "42".into()),
                ("status".into(), "active".into())
            ])
        );
        assert_eq!(
            next_query(&json!({"first": "/v2/images"}), Paging::GlanceNext),
            None
        );
        // A link without a query cannot lead anywhere new.
        assert_eq!(query_of("/v2/images"), None);
        assert_eq!(next_query(&page, Paging::Single), None);
    }

    #[test]
    fn path_segments() {
        assert_eq!(seg("my stack/1?#%"), "my%20stack%2F1%3F%23%25");
        assert_eq!(seg("été"), "%C3%A9t%C3%A9");
        assert_eq!(seg("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(object_path("dir/sub dir/f.yaml"), "dir/sub%20dir/f.yaml");
    }
}
