//! Finding a service's endpoint in the Keystone catalog, and the API version behind it: the
//! pure half of endpoint discovery (the HTTP half is in `client.rs`).

use std::fmt;
use std::str::FromStr;

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use super::config::Interface;
use super::error::{ApiError, Service};

/// One service of the catalog in a Keystone v3 token.
#[derive(Clone, Debug, Deserialize)]
pub struct CatalogService {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CatalogEndpoint {
    pub interface: String,
    #[serde(default)]
    pub region_id: Option<String>,
    /// Deprecated in Keystone but still sent; some clouds fill only this one.
    #[serde(default)]
    pub region: Option<String>,
    pub url: String,
}

impl CatalogEndpoint {
    fn in_region(&self, region: &str) -> bool {
        self.region_id.as_deref() == Some(region) || self.region.as_deref() == Some(region)
    }

    fn region_name(&self) -> &str {
        self.region_id
            .as_deref()
            .or(self.region.as_deref())
            .unwrap_or("(no region)")
    }
}

/// The catalog URL of `service`, without a trailing slash. Types are tried in order of
/// preference; with no region configured, the first matching endpoint wins (as keystoneauth).
pub fn select_endpoint(
    catalog: &[CatalogService],
    service: Service,
    interface: Interface,
    region: Option<&str>,
) -> Result<String, ApiError> {
    for wanted in service.catalog_types() {
        let found = catalog
            .iter()
            .filter(|s| s.service_type == *wanted)
            .flat_map(|s| s.endpoints.iter())
            .find(|e| e.interface == interface.as_str() && region.is_none_or(|r| e.in_region(r)));
        if let Some(endpoint) = found {
            return Ok(endpoint.url.trim_end_matches('/').to_string());
        }
    }
    let available = catalog
        .iter()
        .flat_map(|s| {
            s.endpoints.iter().map(move |e| {
                format!(
                    "{} {} {} {}",
                    s.service_type,
                    e.interface,
                    e.region_name(),
                    e.url
                )
            })
        })
        .collect();
    Err(ApiError::EndpointNotFound {
        service,
        interface: interface.to_string(),
        region: region.map(str::to_string),
        available,
    })
}

/// True for a path segment naming an API version: `v2`, `v2.0`, `v2.1`, `v3`.
fn is_version_segment(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    !rest.is_empty()
        && rest.split('.').count() <= 2
        && rest
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// The version segment of an endpoint URL and the URL up to and including it (no trailing
/// slash): `https://nova/compute/v2.1/abc` → (`v2.1`, `https://nova/compute/v2.1`).
pub(crate) fn version_prefix(url: &str) -> Option<(String, String)> {
    let parsed = Url::parse(url).ok()?;
    let segments: Vec<&str> = parsed.path_segments()?.collect();
    let index = segments.iter().rposition(|s| is_version_segment(s))?;
    let mut prefix = parsed.clone();
    prefix.set_query(None);
    prefix.set_path(&format!("/{}", segments[..=index].join("/")));
    Some((
        segments[index].to_string(),
        prefix.as_str().trim_end_matches('/').to_string(),
    ))
}

/// True when the endpoint URL ends with a version of the wanted major (`v2`, `v2.0`...).
pub(crate) fn ends_with_major(url: &str, major: u32) -> bool {
    let last = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    is_version_segment(last) && last[1..].split('.').next() == Some(&major.to_string())
}

/// One entry of a version document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVersion {
    pub id: String,
    pub status: String,
    /// Highest microversion, for services that have them; None when absent or empty.
    pub max: Option<String>,
    pub min: Option<String>,
}

/// The entries of a version document: `{"versions": [...]}` (also Keystone's
/// `{"versions": {"values": [...]}}`) or a single `{"version": {...}}`.
pub(crate) fn parse_versions(doc: &Value) -> Vec<ApiVersion> {
    let list = match (doc.get("versions"), doc.get("version")) {
        (Some(Value::Array(list)), _) => list.clone(),
        (Some(Value::Object(wrapped)), _) => wrapped
            .get("values")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        (None, Some(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    list.iter()
        .filter_map(|v| {
            Some(ApiVersion {
                id: text(v, "id")?,
                status: text(v, "status").unwrap_or_default(),
                max: text(v, "version"),
                min: text(v, "min_version"),
            })
        })
        .collect()
}

/// The first usable version whose id has the wanted major (`v2.16` for 2).
pub(crate) fn find_major(versions: &[ApiVersion], major: u32) -> Option<&ApiVersion> {
    let usable = |v: &&ApiVersion| {
        let status = v.status.to_ascii_uppercase();
        !matches!(status.as_str(), "DEPRECATED" | "DELETED" | "EXPERIMENTAL")
    };
    versions.iter().filter(usable).find(|v| {
        v.id.strip_prefix('v').and_then(|r| r.split('.').next()) == Some(&major.to_string())
    })
}

/// A compute API microversion, `2.79`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Microversion {
    pub major: u16,
    pub minor: u16,
}

impl Microversion {
    pub const fn new(major: u16, minor: u16) -> Self {
        Microversion { major, minor }
    }
}

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for Microversion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a microversion (expected e.g. 2.79)");
        let (major, minor) = s.trim().split_once('.').ok_or_else(bad)?;
        Ok(Microversion {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// The compute microversion the factory asks for when the cloud offers it. The client
/// understands every answer shape from 2.1 up to this one (createImage's body from 2.45, the
/// embedded flavor from 2.47, `networks: auto` from 2.37); Nova stops generating keypairs at 2.92.
pub const COMPUTE_MICROVERSION: Microversion = Microversion::new(2, 79);

/// The oldest compute API the factory works with.
pub const COMPUTE_MIN_MICROVERSION: Microversion = Microversion::new(2, 1);

/// The microversion to send: the highest both sides know. `server` is the compute version
/// document's entry (`version` is its maximum, `min_version` its minimum).
pub(crate) fn negotiate_microversion(
    server: &ApiVersion,
    wanted: Microversion,
    needed: Microversion,
) -> Result<Microversion, ApiError> {
    let offered = match (&server.min, &server.max) {
        (Some(min), Some(max)) => format!("{min} to {max}"),
        _ => format!("none ({} without microversions)", server.id),
    };
    let error = || ApiError::Microversion {
        offered: offered.clone(),
        needed: format!("{needed} to {wanted}"),
    };
    let max: Microversion = server
        .max
        .as_deref()
        .ok_or_else(error)?
        .parse()
        .map_err(|_| error())?;
    let min: Microversion = match server.min.as_deref() {
        Some(min) => min.parse().map_err(|_| error())?,
        None => needed,
    };
    let chosen = wanted.min(max);
    if chosen < needed || chosen < min {
        return Err(error());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Vec<CatalogService> {
        serde_json::from_value(json!([
            {"type": "compute", "name": "nova", "endpoints": [
                {"interface": "public", "region_id": "RegionOne", "region": "RegionOne",
                 "url": "https://nova.one/v2.1/p1", "id": "1"},
                {"interface": "internal", "region_id": "RegionOne", "url": "http://nova.int/v2.1", "id": "2"},
                {"interface": "public", "region_id": "RegionTwo", "url": "https://nova.two/v2.1/", "id": "3"}
            ]},
            {"type": "volumev3", "name": "cinderv3", "endpoints": [
                {"interface": "public", "region": "RegionOne", "url": "https://cinder/v3/p1", "id": "4"}
            ]},
            {"type": "image", "endpoints": [
                {"interface": "public", "region_id": "RegionOne", "url": "https://glance:9292", "id": "5"}
            ]}
        ]))
        .unwrap()
    }

    #[test]
    fn selects_by_type_interface_and_region() {
        let c = catalog();
        let pick = |s, i, r| select_endpoint(&c, s, i, r);
        assert_eq!(
            pick(Service::Compute, Interface::Public, Some("RegionOne")).unwrap(),
            "https://nova.one/v2.1/p1"
        );
        assert_eq!(
            pick(Service::Compute, Interface::Public, Some("RegionTwo")).unwrap(),
            "https://nova.two/v2.1"
        );
        assert_eq!(
            pick(Service::Compute, Interface::Internal, None).unwrap(),
            "http://nova.int/v2.1"
        );
        assert_eq!(
            pick(Service::Compute, Interface::Public, None).unwrap(),
            "https://nova.one/v2.1/p1"
        );
        // volumev3 stands in for block-storage; `region` is read when `region_id` is absent.
        assert_eq!(
            pick(Service::BlockStorage, Interface::Public, Some("RegionOne")).unwrap(),
            "https://cinder/v3/p1"
        );
    }

    #[test]
    fn missing_endpoint_lists_the_catalog() {
        let err = select_endpoint(&catalog(), Service::Network, Interface::Public, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no network endpoint (network) with interface public"),
            "{err}"
        );
        assert!(
            err.contains("compute public RegionTwo https://nova.two/v2.1/"),
            "{err}"
        );
        assert!(
            err.contains("volumev3 public RegionOne https://cinder/v3/p1"),
            "{err}"
        );
        let err = select_endpoint(
            &catalog(),
            Service::Image,
            Interface::Admin,
            Some("RegionOne"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("with interface admin in region RegionOne")
        );
        let err = select_endpoint(&[], Service::Image, Interface::Public, None).unwrap_err();
        assert!(err.to_string().contains("the catalog is empty"), "{err}");
    }

    #[test]
    fn version_segments() {
        assert_eq!(
            version_prefix("https://nova/compute/v2.1/abc"),
            Some(("v2.1".into(), "https://nova/compute/v2.1".into()))
        );
        assert_eq!(
            version_prefix("https://nova:8774/v2.1"),
            Some(("v2.1".into(), "https://nova:8774/v2.1".into()))
        );
        assert_eq!(version_prefix("https://glance:9292"), None);
        assert_eq!(version_prefix("https://host/very/"), None);
        assert!(ends_with_major("https://glance/v2", 2));
        assert!(ends_with_major("https://glance/image/v2.16/", 2));
        assert!(ends_with_major("http://neutron:9696/v2.0", 2));
        assert!(!ends_with_major("http://neutron:9696/", 2));
        assert!(!ends_with_major("http://neutron:9696/v1", 2));
        assert!(!ends_with_major("http://host/vx", 2));
    }

    #[test]
    fn version_documents() {
        // Glance's root (answered with 300 Multiple Choices).
        let glance = json!({"versions": [
            {"id": "v2.16", "status": "CURRENT", "links": [{"href": "http://g/v2/", "rel": "self"}]},
            {"id": "v2.0", "status": "SUPPORTED", "links": []}
        ]});
        let v = parse_versions(&glance);
        assert_eq!(find_major(&v, 2).unwrap().id, "v2.16");
        assert!(find_major(&v, 1).is_none());
        // Neutron's root.
        let neutron = json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": []}]});
        assert_eq!(find_major(&parse_versions(&neutron), 2).unwrap().id, "v2.0");
        // Nova's GET /v2.1/.
        let nova = json!({"version": {"id": "v2.1", "status": "CURRENT", "version": "2.95",
            "min_version": "2.1", "updated": "2013-07-23T11:33:21Z"}});
        assert_eq!(
            parse_versions(&nova),
            vec![ApiVersion {
                id: "v2.1".into(),
                status: "CURRENT".into(),
                max: Some("2.95".into()),
                min: Some("2.1".into()),
            }]
        );
        // Keystone's wrapped form, and garbage.
        let ks = json!({"versions": {"values": [{"id": "v3.14", "status": "stable"}]}});
        assert_eq!(find_major(&parse_versions(&ks), 3).unwrap().id, "v3.14");
        assert!(parse_versions(&json!({"nothing": 1})).is_empty());
        let deprecated = json!({"versions": [{"id": "v2.0", "status": "DEPRECATED"}]});
        assert!(find_major(&parse_versions(&deprecated), 2).is_none());
    }

    fn server(min: &str, max: &str) -> ApiVersion {
        ApiVersion {
            id: "v2.1".into(),
            status: "CURRENT".into(),
            min: Some(min.into()).filter(|s: &String| !s.is_empty()),
            max: Some(max.into()).filter(|s: &String| !s.is_empty()),
        }
    }

    #[test]
    fn microversion_negotiation() {
        let want = COMPUTE_MICROVERSION;
        let need = COMPUTE_MIN_MICROVERSION;
        assert_eq!(
            negotiate_microversion(&server("2.1", "2.96"), want, need).unwrap(),
            Microversion::new(2, 79)
        );
        assert_eq!(
            negotiate_microversion(&server("2.1", "2.60"), want, need).unwrap(),
            Microversion::new(2, 60)
        );
        // Below what the factory needs: a clear error naming both ranges.
        let err = negotiate_microversion(&server("2.1", "2.30"), want, Microversion::new(2, 45))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the compute API of this cloud offers microversions 2.1 to 2.30; image-factory needs \
             2.45 to 2.79"
        );
        // The legacy v2.0 API has no microversions.
        let legacy = ApiVersion {
            id: "v2.0".into(),
            status: "SUPPORTED".into(),
            min: None,
            max: None,
        };
        let err = negotiate_microversion(&legacy, want, need).unwrap_err();
        assert!(
            err.to_string().contains("offers microversions none (v2.0"),
            "{err}"
        );
        // A server whose minimum is above what we know.
        assert!(negotiate_microversion(&server("2.90", "2.96"), want, need).is_err());
        assert_eq!("2.79".parse::<Microversion>().unwrap(), want);
        assert!(Microversion::new(2, 9) < Microversion::new(2, 10));
        assert!("2".parse::<Microversion>().is_err());
        assert_eq!(want.to_string(), "2.79");
    }
}
