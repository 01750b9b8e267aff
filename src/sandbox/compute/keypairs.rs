//! os-keypairs: import a public key, or (before 2.92) generate one with `ssh-keygen`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::Utc;
use md5::{Digest, Md5};
use serde_json::{Value, json};

use super::{Mv, SVC, bad_request, conflict, not_found};
use crate::sandbox::error::{ApiError, ApiResult};
use crate::sandbox::store::Keypair;
use crate::sandbox::{Shared, parse_json, util};

/// Nova's MD5 fingerprint of an OpenSSH public key (`aa:bb:...`), or None when it is not one.
pub fn fingerprint(public_key: &str) -> Option<String> {
    let mut words = public_key.split_whitespace();
    let kind = words.next()?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(words.next()?)
        .ok()?;
    // The blob starts with its own key type, length-prefixed: a cheap consistency check.
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    if blob.get(4..4 + len)? != kind.as_bytes() {
        return None;
    }
    let digest = Md5::digest(&blob);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn valid_name(name: &str, mv: Mv) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c == ' '
                || c == '_'
                || c == '-'
                || (mv >= Mv(92) && (c == '@' || c == '.'))
        })
}

fn view(k: &Keypair, mv: Mv) -> Value {
    let mut v = json!({
        "name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint,
    });
    if mv >= Mv(2) {
        v["type"] = json!(k.key_type);
    }
    v
}

/// Runs `ssh-keygen` in a temporary directory: (private key, public key).
async fn generate(name: &str) -> ApiResult<(String, String)> {
    let dir = tempfile::tempdir().map_err(|e| ApiError::internal(SVC, e))?;
    let path = dir.path().join("key");
    let status = tokio::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "Generated-by-Nova",
            "-f",
        ])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| ApiError::internal(SVC, format!("ssh-keygen for keypair {name}: {e}")))?;
    if !status.success() {
        return Err(ApiError::internal(
            SVC,
            format!("ssh-keygen for keypair {name}: {status}"),
        ));
    }
    let private = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| ApiError::internal(SVC, e))?;
    let public = tokio::fs::read_to_string(path.with_extension("pub"))
        .await
        .map_err(|e| ApiError::internal(SVC, e))?;
    Ok((private, public.trim().to_string()))
}

pub async fn create(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    body: Bytes,
) -> ApiResult<Response> {
    let request = parse_json(SVC, &body)?;
    let kp = request.get("keypair").ok_or_else(|| {
        bad_request("Invalid input for field/attribute keypair. 'keypair' is a required property")
    })?;
    let v = create_keypair(&ctx, mv, kp).await?;
    let status = if mv >= Mv(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(json!({ "keypair": v }))).into_response())
}

/// Imports or generates a key pair from the `keypair` object of a create request; gives Nova's
/// view of it, with the private key when one was generated.
pub async fn create_keypair(ctx: &Shared, mv: Mv, kp: &Value) -> ApiResult<Value> {
    let name = kp
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad_request("Invalid input for field/attribute keypair. 'name' is a required property")
        })?
        .to_string();
    if !valid_name(&name, mv) {
        return Err(bad_request(
            "Keypair data is invalid: Keypair name contains unsafe characters",
        ));
    }
    let key_type = kp
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ssh")
        .to_string();
    let (public_key, private_key) = match kp.get("public_key").and_then(Value::as_str) {
        Some(public) => (public.trim().to_string(), None),
        None if mv >= Mv(92) => {
            return Err(bad_request(
                "Invalid input for field/attribute keypair. 'public_key' is a required property",
            ));
        }
        None => {
            if ctx.store.read(|d| d.keypairs.contains_key(&name)) {
                return Err(conflict(format!("Key pair '{name}' already exists.")));
            }
            let (private, public) = generate(&name).await?;
            (public, Some(private))
        }
    };
    let fingerprint = fingerprint(&public_key)
        .ok_or_else(|| bad_request("Keypair data is invalid: failed to generate fingerprint"))?;
    let user_id = ctx.store.read(|d| d.identity.user_id.clone());
    let keypair = ctx.store.mutate(SVC, |d| {
        if d.keypairs.contains_key(&name) {
            return Err(conflict(format!("Key pair '{name}' already exists.")));
        }
        let keypair = Keypair {
            name: name.clone(),
            public_key,
            fingerprint,
            key_type,
            created_at: Utc::now(),
            id: d.keypairs.values().map(|k| k.id).max().unwrap_or(0) + 1,
        };
        d.keypairs.insert(name.clone(), keypair.clone());
        Ok(keypair)
    })?;
    let mut v = view(&keypair, mv);
    v["user_id"] = json!(user_id);
    if let Some(private) = private_key {
        v["private_key"] = json!(private);
    }
    Ok(v)
}

/// Keypairs by name; from 2.35 paged by `limit` and `marker` (a name), with `keypairs_links`.
pub async fn list(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let get = |key: &str| {
        q.iter()
            .find(|(k, _)| k == key && mv >= Mv(35))
            .map(|(_, v)| v.as_str())
    };
    let limit = match get("limit") {
        Some(l) => Some(l.parse::<usize>().map_err(|_| {
            bad_request(format!(
                "Invalid input for query parameters limit. Value: {l}."
            ))
        })?),
        None => None,
    };
    let marker = get("marker");
    let (list, next) = ctx
        .store
        .read(|d| -> ApiResult<(Vec<Value>, Option<String>)> {
            if let Some(m) = marker
                && !d.keypairs.contains_key(m)
            {
                return Err(not_found(format!("Marker keypair {m} could not be found.")));
            }
            // The map keeps names in order.
            let mut names: Vec<&String> = d
                .keypairs
                .keys()
                .filter(|n| marker.is_none_or(|m| n.as_str() > m))
                .collect();
            let more = limit.is_some_and(|l| names.len() > l);
            names.truncate(limit.unwrap_or(usize::MAX));
            let list = names
                .iter()
                .filter_map(|n| d.keypairs.get(*n))
                .map(|k| json!({"keypair": view(k, mv)}))
                .collect();
            Ok((list, names.last().filter(|_| more).map(|n| n.to_string())))
        })?;
    let mut body = json!({ "keypairs": list });
    if let Some(last) = next {
        let href = util::next_href(&format!("{}/compute/v2.1/os-keypairs", ctx.base), &q, &last);
        body["keypairs_links"] = json!([{"rel": "next", "href": href}]);
    }
    Ok(axum::Json(body).into_response())
}

pub async fn show(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let v = ctx.store.read(|d| {
        d.keypairs.get(&name).map(|k| {
            let mut v = view(k, mv);
            v["user_id"] = json!(d.identity.user_id);
            v["created_at"] = json!(util::iso_micro(k.created_at));
            v["updated_at"] = Value::Null;
            v["deleted"] = json!(false);
            v["deleted_at"] = Value::Null;
            v["id"] = json!(k.id);
            v
        })
    });
    let v = v.ok_or_else(|| not_found(format!("Keypair {name} not found for user admin")))?;
    Ok(axum::Json(json!({ "keypair": v })).into_response())
}

pub async fn delete(
    State(ctx): State<Shared>,
    Extension(mv): Extension<Mv>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    delete_keypair(&ctx, &name)?;
    Ok(if mv >= Mv(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}

pub fn delete_keypair(ctx: &Shared, name: &str) -> ApiResult<()> {
    ctx.store.mutate(SVC, |d| {
        d.keypairs
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(format!("Keypair {name} not found for user admin")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_nova() {
        // The blob of an ed25519 key: "ssh-ed25519" length-prefixed, then 32 key bytes.
        let mut blob = vec![0, 0, 0, 11];
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        blob.extend_from_slice(&[7u8; 32]);
        let key = format!(
            "ssh-ed25519 {} me@host",
            base64::engine::general_purpose::STANDARD.encode(&blob)
        );
        let expected = Md5::digest(&blob)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(fingerprint(&key).as_deref(), Some(expected.as_str()));
        assert_eq!(fingerprint("ssh-rsa bm90IGEga2V5"), None);
        assert_eq!(fingerprint("garbage"), None);
    }
}
