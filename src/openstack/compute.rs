//! Compute (Nova v2.1): flavors, keypairs, servers, server actions, console output and volume
//! attachments. Answers are read the same way whatever microversion was negotiated (2.1 to
//! [`COMPUTE_MICROVERSION`](super::COMPUTE_MICROVERSION)).

use std::collections::BTreeMap;
use std::fmt;

use reqwest::header::LOCATION;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::catalog::Microversion;
use super::client::Cloud;
use super::config::Secret;
use super::error::{ApiError, Service};
use super::paging::{Paging, seg};
use super::request::Req;

const C: Service = Service::Compute;

#[derive(Clone, Debug, Deserialize)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    /// MiB.
    pub ram: u64,
    /// GiB.
    pub disk: u64,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral", default)]
    pub ephemeral: u64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "os-flavor-access:is_public", default = "yes")]
    pub is_public: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
pub struct Keypair {
    pub name: String,
    pub public_key: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(rename = "type", default)]
    pub key_type: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A created keypair; `private_key` only when Nova generated it (it is shown once).
#[derive(Clone, Debug)]
pub struct CreatedKeypair {
    pub keypair: Keypair,
    pub private_key: Option<Secret>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    /// BUILD, ACTIVE, SHUTOFF, ERROR, DELETED...
    pub status: String,
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    pub vm_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:power_state", default)]
    pub power_state: Option<i64>,
    /// Network name → addresses.
    #[serde(default)]
    pub addresses: BTreeMap<String, Vec<ServerAddress>>,
    /// Why the server is in ERROR.
    #[serde(default)]
    pub fault: Option<Fault>,
    /// The image booted from; None when booted from a volume (Nova sends `""`).
    #[serde(rename = "image", default, deserialize_with = "image_id")]
    pub image_id: Option<String>,
    #[serde(default)]
    pub flavor: Option<ServerFlavor>,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub security_groups: Vec<NameRef>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(rename = "tenant_id", default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub progress: Option<u32>,
}

impl Server {
    /// Every address of the server, with its kind (`fixed` / `floating`).
    pub fn ips(&self) -> impl Iterator<Item = &ServerAddress> {
        self.addresses.values().flatten()
    }
}

fn image_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Object(image) => image.get("id").and_then(Value::as_str).map(str::to_string),
        Value::String(id) if !id.is_empty() => Some(id),
        _ => None,
    })
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServerAddress {
    pub addr: String,
    #[serde(default)]
    pub version: u8,
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub kind: Option<String>,
    #[serde(rename = "OS-EXT-IPS-MAC:mac_addr", default)]
    pub mac: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Option<String>,
}

/// The flavor of a server: a reference before 2.47, the embedded description after.
#[derive(Clone, Debug, Deserialize)]
pub struct ServerFlavor {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub original_name: Option<String>,
    #[serde(default)]
    pub vcpus: Option<u32>,
    #[serde(default)]
    pub ram: Option<u64>,
    #[serde(default)]
    pub disk: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NameRef {
    pub name: String,
}

/// How a new server joins a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkAttachment {
    Network(String),
    Port(String),
    FixedIp { network: String, ip: String },
}

/// One entry of `block_device_mapping_v2`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BlockDevice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_index: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// image, volume, snapshot or blank.
    pub source_type: String,
    /// volume or local.
    pub destination_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<u64>,
    pub delete_on_termination: bool,
}

impl BlockDevice {
    /// Boot from a new volume of `size_gb` GiB made from `image_id`.
    pub fn boot_volume_from_image(
        image_id: &str,
        size_gb: u64,
        delete_on_termination: bool,
    ) -> Self {
        BlockDevice {
            boot_index: Some(0),
            uuid: Some(image_id.to_string()),
            source_type: "image".into(),
            destination_type: "volume".into(),
            volume_size: Some(size_gb),
            delete_on_termination,
        }
    }
}

/// What to boot. `user_data` is the raw cloud-init text; it is base64-encoded on the way.
#[derive(Clone, Default)]
pub struct NewServer {
    pub name: String,
    /// None when booting from a volume described in `block_devices`.
    pub image_id: Option<String>,
    pub flavor_id: String,
    /// Empty: Nova picks (`auto`, from 2.37).
    pub networks: Vec<NetworkAttachment>,
    pub security_groups: Vec<String>,
    pub key_name: Option<String>,
    pub user_data: Option<Vec<u8>>,
    pub config_drive: bool,
    pub block_devices: Vec<BlockDevice>,
    pub metadata: BTreeMap<String, String>,
    pub availability_zone: Option<String>,
}

// Hand-written: user data may hold credentials for the guest.
impl fmt::Debug for NewServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewServer")
            .field("name", &self.name)
            .field("image_id", &self.image_id)
            .field("flavor_id", &self.flavor_id)
            .field("networks", &self.networks)
            .field("security_groups", &self.security_groups)
            .field("key_name", &self.key_name)
            .field(
                "user_data",
                &self
                    .user_data
                    .as_ref()
                    .map(|u| format!("<{} bytes>", u.len())),
            )
            .field("config_drive", &self.config_drive)
            .field("block_devices", &self.block_devices)
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl NewServer {
    /// The `POST /servers` body for the negotiated microversion.
    pub(crate) fn body(&self, microversion: Microversion) -> Value {
        let mut server = json!({ "name": self.name, "flavorRef": self.flavor_id });
        if let Some(image) = &self.image_id {
            server["imageRef"] = json!(image);
        }
        let networks: Vec<Value> = self
            .networks
            .iter()
            .map(|n| match n {
                NetworkAttachment::Network(id) => json!({ "uuid": id }),
                NetworkAttachment::Port(id) => json!({ "port": id }),
                NetworkAttachment::FixedIp { network, ip } => {
                    json!({ "uuid": network, "fixed_ip": ip })
                }
            })
            .collect();
        if !networks.is_empty() {
            server["networks"] = json!(networks);
        } else if microversion >= Microversion::new(2, 37) {
            // Required from 2.37: let Nova pick the project's network.
            server["networks"] = json!("auto");
        }
        if !self.security_groups.is_empty() {
            let groups: Vec<Value> = self
                .security_groups
                .iter()
                .map(|name| json!({ "name": name }))
                .collect();
            server["security_groups"] = json!(groups);
        }
        if let Some(key) = &self.key_name {
            server["key_name"] = json!(key);
        }
        if let Some(data) = &self.user_data {
            server["user_data"] = json!(base64(data));
        }
        if self.config_drive {
            server["config_drive"] = json!(true);
        }
        if !self.block_devices.is_empty() {
            server["block_device_mapping_v2"] = json!(self.block_devices);
        }
        if !self.metadata.is_empty() {
            server["metadata"] = json!(self.metadata);
        }
        if let Some(zone) = &self.availability_zone {
            server["availability_zone"] = json!(zone);
        }
        json!({ "server": server })
    }
}

/// The answer to a server creation: the id, and the generated root password if any.
#[derive(Clone, Debug)]
pub struct CreatedServer {
    pub id: String,
    pub admin_pass: Option<Secret>,
}

#[derive(Clone, Debug, Default)]
pub struct ServerFilter {
    /// A regular expression, as Nova matches it.
    pub name: Option<String>,
    pub status: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootType {
    Soft,
    Hard,
}

#[derive(Clone, Debug, Deserialize)]
pub struct VolumeAttachment {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "volumeId")]
    pub volume_id: String,
    #[serde(rename = "serverId", default)]
    pub server_id: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
}

/// Standard base64 with padding (RFC 4648), as Nova wants `user_data`.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The image id of a createImage answer: the body from 2.45, else the `Location` header.
pub(crate) fn created_image_id(body: &Value, location: Option<&str>) -> Option<String> {
    if let Some(id) = body.get("image_id").and_then(Value::as_str) {
        return Some(id.to_string());
    }
    let location = location?.trim_end_matches('/');
    let id = location.rsplit('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

impl Cloud {
    pub async fn list_flavors(&self) -> Result<Vec<Flavor>, ApiError> {
        let req = Req::get(C, "/flavors/detail");
        self.list(req, "flavors", Paging::Links("flavors_links"))
            .await
    }

    pub async fn get_flavor(&self, id: &str) -> Result<Flavor, ApiError> {
        self.json_key(Req::get(C, format!("/flavors/{}", seg(id))), "flavor")
            .await
    }

    /// A flavor by id, else by exact name.
    pub async fn find_flavor(&self, name_or_id: &str) -> Result<Flavor, ApiError> {
        match self.get_flavor(name_or_id).await {
            Err(e) if e.is_not_found() => {}
            other => return other,
        }
        let found: Vec<Flavor> = self
            .list_flavors()
            .await?
            .into_iter()
            .filter(|f| f.name == name_or_id)
            .collect();
        one("flavor", name_or_id, found)
    }

    /// Imports `public_key`, or (None) lets Nova generate the pair and return the private key.
    pub async fn create_keypair(
        &self,
        name: &str,
        public_key: Option<&str>,
    ) -> Result<CreatedKeypair, ApiError> {
        let mut keypair = json!({ "name": name });
        if let Some(key) = public_key {
            keypair["public_key"] = json!(key);
        }
        let req = Req::post(C, "/os-keypairs", json!({ "keypair": keypair }));
        let mut value: Value = self.json_key(req.clone(), "keypair").await?;
        let private_key = value
            .as_object_mut()
            .and_then(|o| o.remove("private_key"))
            .and_then(|v| v.as_str().map(Secret::new));
        let keypair = serde_json::from_value(value).map_err(|e| ApiError::Decode {
            service: C,
            method: reqwest::Method::POST,
            path: "/os-keypairs".into(),
            detail: format!("`keypair`: {e}"),
        })?;
        Ok(CreatedKeypair {
            keypair,
            private_key,
        })
    }

    pub async fn get_keypair(&self, name: &str) -> Result<Keypair, ApiError> {
        self.json_key(
            Req::get(C, format!("/os-keypairs/{}", seg(name))),
            "keypair",
        )
        .await
    }

    pub async fn list_keypairs(&self) -> Result<Vec<Keypair>, ApiError> {
        #[derive(Deserialize)]
        struct Wrapped {
            keypair: Keypair,
        }
        let req = Req::get(C, "/os-keypairs");
        let wrapped: Vec<Wrapped> = self
            .list(req, "keypairs", Paging::Links("keypairs_links"))
            .await?;
        Ok(wrapped.into_iter().map(|w| w.keypair).collect())
    }

    pub async fn delete_keypair(&self, name: &str) -> Result<(), ApiError> {
        self.call(Req::delete(C, format!("/os-keypairs/{}", seg(name))))
            .await
            .map(drop)
    }

    /// Boots a server. Not retried: a lost answer may still have created it (look it up by name).
    pub async fn create_server(&self, server: &NewServer) -> Result<CreatedServer, ApiError> {
        #[derive(Deserialize)]
        struct Created {
            id: String,
            #[serde(rename = "adminPass", default)]
            admin_pass: Option<String>,
        }
        let microversion = self.compute_microversion().await?;
        let req = Req::post(C, "/servers", server.body(microversion));
        let created: Created = self.json_key(req, "server").await?;
        Ok(CreatedServer {
            id: created.id,
            admin_pass: created.admin_pass.map(Secret::new),
        })
    }

    pub async fn get_server(&self, id: &str) -> Result<Server, ApiError> {
        self.json_key(Req::get(C, format!("/servers/{}", seg(id))), "server")
            .await
    }

    pub async fn list_servers(&self, filter: &ServerFilter) -> Result<Vec<Server>, ApiError> {
        let req = Req::get(C, "/servers/detail")
            .query_opt("name", filter.name.as_deref())
            .query_opt("status", filter.status.as_deref());
        self.list(req, "servers", Paging::Links("servers_links"))
            .await
    }

    pub async fn delete_server(&self, id: &str) -> Result<(), ApiError> {
        self.call(Req::delete(C, format!("/servers/{}", seg(id))))
            .await
            .map(drop)
    }

    async fn server_action(&self, id: &str, action: Value) -> Result<reqwest::Response, ApiError> {
        self.send(Req::post(C, format!("/servers/{}/action", seg(id)), action))
            .await
    }

    pub async fn stop_server(&self, id: &str) -> Result<(), ApiError> {
        self.server_action(id, json!({ "os-stop": null }))
            .await
            .map(drop)
    }

    pub async fn start_server(&self, id: &str) -> Result<(), ApiError> {
        self.server_action(id, json!({ "os-start": null }))
            .await
            .map(drop)
    }

    pub async fn reboot_server(&self, id: &str, kind: RebootType) -> Result<(), ApiError> {
        let kind = match kind {
            RebootType::Soft => "SOFT",
            RebootType::Hard => "HARD",
        };
        self.server_action(id, json!({ "reboot": { "type": kind } }))
            .await
            .map(drop)
    }

    /// Snapshots the server into a new Glance image; returns the image id (still `queued` /
    /// `saving`: wait for `active`).
    pub async fn create_server_image(
        &self,
        id: &str,
        name: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, ApiError> {
        let action = json!({ "createImage": { "name": name, "metadata": metadata } });
        let response = self.server_action(id, action).await?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response.bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        created_image_id(&body, location.as_deref()).ok_or_else(|| ApiError::Decode {
            service: C,
            method: reqwest::Method::POST,
            path: format!("/servers/{}/action", seg(id)),
            detail: "createImage answered with neither an image_id nor a Location".into(),
        })
    }

    /// The last `length` lines of the console log (all of it when None).
    pub async fn console_output(&self, id: &str, length: Option<u32>) -> Result<String, ApiError> {
        let action = match length {
            Some(n) => json!({ "os-getConsoleOutput": { "length": n } }),
            None => json!({ "os-getConsoleOutput": {} }),
        };
        let req = Req::post(C, format!("/servers/{}/action", seg(id)), action);
        self.json_key(req, "output").await
    }

    pub async fn attach_volume(
        &self,
        server_id: &str,
        volume_id: &str,
        device: Option<&str>,
    ) -> Result<VolumeAttachment, ApiError> {
        let mut attachment = json!({ "volumeId": volume_id });
        if let Some(device) = device {
            attachment["device"] = json!(device);
        }
        let path = format!("/servers/{}/os-volume_attachments", seg(server_id));
        let req = Req::post(C, path, json!({ "volumeAttachment": attachment }));
        self.json_key(req, "volumeAttachment").await
    }

    pub async fn list_volume_attachments(
        &self,
        server_id: &str,
    ) -> Result<Vec<VolumeAttachment>, ApiError> {
        let path = format!("/servers/{}/os-volume_attachments", seg(server_id));
        self.list(Req::get(C, path), "volumeAttachments", Paging::Single)
            .await
    }

    pub async fn detach_volume(&self, server_id: &str, volume_id: &str) -> Result<(), ApiError> {
        let path = format!(
            "/servers/{}/os-volume_attachments/{}",
            seg(server_id),
            seg(volume_id)
        );
        self.call(Req::delete(C, path)).await.map(drop)
    }
}

/// Exactly one match of a lookup by name.
pub(crate) fn one<T>(kind: &'static str, name: &str, mut found: Vec<T>) -> Result<T, ApiError> {
    match found.len() {
        0 => Err(ApiError::NotFound {
            kind,
            name: name.to_string(),
        }),
        1 => found.pop().ok_or(ApiError::NotFound {
            kind,
            name: name.to_string(),
        }),
        count => Err(ApiError::Ambiguous {
            kind,
            name: name.to_string(),
            count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn server_body_per_microversion() {
        let mut server = NewServer {
            name: "builder".into(),
            image_id: Some("img".into()),
            flavor_id: "42".into(),
            security_groups: vec!["ssh".into()],
            key_name: Some("k".into()),
            user_data: Some(b"#cloud-config\n".to_vec()),
            config_drive: true,
            ..NewServer::default()
        };
        server.metadata.insert("factory-build".into(), "b1".into());
        let body = server.body(Microversion::new(2, 79));
        assert_eq!(
            body,
            json!({"server": {
                "name": "builder", "flavorRef": "42", "imageRef": "img", "networks": "auto",
                "security_groups": [{"name": "ssh"}], "key_name": "k",
                "user_data": "I2Nsb3VkLWNvbmZpZwo=", "config_drive": true,
                "metadata": {"factory-build": "b1"}
            }})
        );
        // Before 2.37 `networks` may be left out, and `auto` is not understood.
        assert!(
            server.body(Microversion::new(2, 1))["server"]
                .get("networks")
                .is_none()
        );

        server.image_id = None;
        server.networks = vec![
            NetworkAttachment::Network("n1".into()),
            NetworkAttachment::Port("p1".into()),
            NetworkAttachment::FixedIp {
                network: "n2".into(),
                ip: "10.0.0.5".into(),
            },
        ];
        server.block_devices = vec![BlockDevice::boot_volume_from_image("img", 20, true)];
        let body = server.body(Microversion::new(2, 79));
        assert!(body["server"].get("imageRef").is_none());
        assert_eq!(
            body["server"]["networks"],
            json!([{"uuid": "n1"}, {"port": "p1"}, {"uuid": "n2", "fixed_ip": "10.0.0.5"}])
        );
        assert_eq!(
            body["server"]["block_device_mapping_v2"],
            json!([{"boot_index": 0, "uuid": "img", "source_type": "image",
                    "destination_type": "volume", "volume_size": 20,
                    "delete_on_termination": true}])
        );
        assert!(!format!("{server:?}").contains("cloud-config"));
    }

    #[test]
    fn server_answers_old_and_new() {
        // 2.47+: embedded flavor; booted from a volume: image "".
        let new: Server = serde_json::from_value(json!({
            "id": "s1", "name": "b", "status": "ERROR", "OS-EXT-STS:task_state": null,
            "addresses": {"private": [{"addr": "10.0.0.3", "version": 4,
                "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]},
            "fault": {"code": 500, "message": "No valid host was found.", "created": "x"},
            "image": "", "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 2048,
                "disk": 20, "extra_specs": {}},
            "metadata": {}, "tenant_id": "p", "unknown_future_field": [1, 2]
        }))
        .unwrap();
        assert_eq!(new.image_id, None);
        assert_eq!(
            new.fault.as_ref().unwrap().message,
            "No valid host was found."
        );
        assert_eq!(
            new.flavor.as_ref().unwrap().original_name.as_deref(),
            Some("m1.small")
        );
        assert_eq!(new.ips().next().unwrap().kind.as_deref(), Some("fixed"));
        // 2.1: flavor and image references.
        let old: Server = serde_json::from_value(json!({
            "id": "s2", "name": "b", "status": "ACTIVE",
            "image": {"id": "img", "links": []}, "flavor": {"id": "1", "links": []}
        }))
        .unwrap();
        assert_eq!(old.image_id.as_deref(), Some("img"));
        assert_eq!(old.flavor.unwrap().id.as_deref(), Some("1"));
    }

    #[test]
    fn create_image_id_from_body_or_location() {
        assert_eq!(
            created_image_id(&json!({"image_id": "i1"}), None).as_deref(),
            Some("i1")
        );
        assert_eq!(
            created_image_id(&Value::Null, Some("http://glance/v2/images/i2")).as_deref(),
            Some("i2")
        );
        assert_eq!(created_image_id(&Value::Null, None), None);
    }

    #[test]
    fn lookups_by_name() {
        assert_eq!(one("flavor", "x", vec![1]).unwrap(), 1);
        assert!(one::<u8>("flavor", "x", vec![]).unwrap_err().is_not_found());
        assert_eq!(
            one("flavor", "x", vec![1, 2]).unwrap_err().to_string(),
            "2 flavors are named `x`; use its id"
        );
    }
}
