//! A fixed set of flavors: devstack's m1.nano and m1.micro, then Nova's classic m1.* sizes.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Mv, links, not_found};
use crate::sandbox::error::ApiResult;
use crate::sandbox::{Shared, util};

#[derive(Clone, Copy, Debug)]
pub struct Flavor {
    pub id: &'static str,
    pub name: &'static str,
    /// MiB
    pub ram: u64,
    /// GiB
    pub disk: u64,
    pub vcpus: u32,
}

pub const FLAVORS: [Flavor; 7] = [
    Flavor {
        id: "42",
        name: "m1.nano",
        ram: 192,
        disk: 1,
        vcpus: 1,
    },
    Flavor {
        id: "84",
        name: "m1.micro",
        ram: 256,
        disk: 1,
        vcpus: 1,
    },
    Flavor {
        id: "1",
        name: "m1.tiny",
        ram: 512,
        disk: 1,
        vcpus: 1,
    },
    Flavor {
        id: "2",
        name: "m1.small",
        ram: 2048,
        disk: 20,
        vcpus: 1,
    },
    Flavor {
        id: "3",
        name: "m1.medium",
        ram: 4096,
        disk: 40,
        vcpus: 2,
    },
    Flavor {
        id: "4",
        name: "m1.large",
        ram: 8192,
        disk: 80,
        vcpus: 4,
    },
    Flavor {
        id: "5",
        name: "m1.xlarge",
        ram: 16384,
        disk: 160,
        vcpus: 8,
    },
];

/// By id (what Nova accepts); `flavorRef` may also be a URL ending in the id.
pub fn find(reference: &str) -> Option<Flavor> {
    let id = reference.rsplit('/').next().unwrap_or(reference);
    FLAVORS.iter().copied().find(|f| f.id == id)
}

fn summary(base: &str, f: &Flavor, mv: Mv) -> Value {
    let mut v =
        json!({"id": f.id, "name": f.name, "links": links(base, &format!("flavors/{}", f.id))});
    if mv >= Mv(55) {
        v["description"] = Value::Null;
    }
    v
}

fn full(base: &str, f: &Flavor, mv: Mv) -> Value {
    let mut v = summary(base, f, mv);
    v["ram"] = json!(f.ram);
    v["disk"] = json!(f.disk);
    v["vcpus"] = json!(f.vcpus);
    v["swap"] = if mv >= Mv(75) { json!(0) } else { json!("") };
    v["OS-FLV-EXT-DATA:ephemeral"] = json!(0);
    v["OS-FLV-DISABLED:disabled"] = json!(false);
    v["os-flavor-access:is_public"] = json!(true);
    v["rxtx_factor"] = json!(1.0);
    if mv >= Mv(61) {
        v["extra_specs"] = json!({});
    }
    v
}

/// Nova's flavor list filters and paging: minRam, minDisk, limit, marker. True when a page was
/// cut short by `limit`.
fn filtered(q: &[(String, String)]) -> ApiResult<(Vec<Flavor>, bool)> {
    let num = |key: &str| {
        q.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    let mut list: Vec<Flavor> = FLAVORS
        .iter()
        .copied()
        .filter(|f| num("minRam").is_none_or(|m| f.ram >= m))
        .filter(|f| num("minDisk").is_none_or(|m| f.disk >= m))
        .collect();
    if let Some((_, marker)) = q.iter().find(|(k, _)| k == "marker") {
        let index = list
            .iter()
            .position(|f| f.id == marker)
            .ok_or_else(|| super::bad_request(format!("marker [{marker}] not found")))?;
        list.drain(..=index);
    }
    let mut more = false;
    if let Some(limit) = num("limit") {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        more = list.len() > limit;
        list.truncate(limit);
    }
    Ok((list, more))
}

/// The list answer, with Nova's `flavors_links` when a page was cut short.
fn page(
    base: &str,
    path: &str,
    q: &[(String, String)],
    list: &[Flavor],
    more: bool,
    view: impl Fn(&Flavor) -> Value,
) -> Value {
    let mut body = json!({ "flavors": list.iter().map(view).collect::<Vec<_>>() });
    if more && let Some(last) = list.last() {
        let href = util::next_href(&format!("{base}/compute/v2.1/{path}"), q, last.id);
        body["flavors_links"] = json!([{"rel": "next", "href": href}]);
    }
    body
}

pub async fn list(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let (list, more) = filtered(&q)?;
    let body = page(&ctx.base, "flavors", &q, &list, more, |f| {
        summary(&ctx.base, f, mv)
    });
    Ok(axum::Json(body).into_response())
}

pub async fn detail(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let (list, more) = filtered(&q)?;
    let body = page(&ctx.base, "flavors/detail", &q, &list, more, |f| {
        full(&ctx.base, f, mv)
    });
    Ok(axum::Json(body).into_response())
}

pub async fn show(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let flavor = find(&id).ok_or_else(|| not_found(format!("Flavor {id} could not be found.")))?;
    Ok(axum::Json(json!({"flavor": full(&ctx.base, &flavor, mv)})).into_response())
}

pub async fn extra_specs(Path(id): Path<String>) -> ApiResult<Response> {
    find(&id).ok_or_else(|| not_found(format!("Flavor {id} could not be found.")))?;
    Ok(axum::Json(json!({"extra_specs": {}})).into_response())
}
