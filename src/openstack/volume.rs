//! Block storage (Cinder v3): volumes.

use serde::Deserialize;
use serde_json::{Value, json};

use super::client::Cloud;
use super::error::{ApiError, Service};
use super::paging::{Paging, seg};
use super::request::Req;

const V: Service = Service::BlockStorage;

#[derive(Clone, Debug, Deserialize)]
pub struct Volume {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// creating, available, in-use, error, deleting, error_deleting...
    pub status: String,
    /// GiB.
    pub size: u64,
    #[serde(default)]
    pub attachments: Vec<VolumeAttachmentInfo>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub volume_type: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct VolumeAttachmentInfo {
    pub server_id: String,
    #[serde(default)]
    pub device: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct NewVolume {
    /// GiB.
    pub size: u64,
    pub name: Option<String>,
    /// Glance image to copy into the volume.
    pub image_id: Option<String>,
    pub description: Option<String>,
    pub volume_type: Option<String>,
    pub availability_zone: Option<String>,
}

impl NewVolume {
    fn body(&self) -> Value {
        let mut volume = json!({ "size": self.size });
        let fields = [
            ("name", &self.name),
            ("imageRef", &self.image_id),
            ("description", &self.description),
            ("volume_type", &self.volume_type),
            ("availability_zone", &self.availability_zone),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                volume[key] = json!(value);
            }
        }
        json!({ "volume": volume })
    }
}

#[derive(Clone, Debug, Default)]
pub struct VolumeFilter {
    pub name: Option<String>,
    pub status: Option<String>,
}

impl Cloud {
    pub async fn create_volume(&self, volume: &NewVolume) -> Result<Volume, ApiError> {
        self.json_key(Req::post(V, "/volumes", volume.body()), "volume")
            .await
    }

    pub async fn get_volume(&self, id: &str) -> Result<Volume, ApiError> {
        self.json_key(Req::get(V, format!("/volumes/{}", seg(id))), "volume")
            .await
    }

    pub async fn list_volumes(&self, filter: &VolumeFilter) -> Result<Vec<Volume>, ApiError> {
        let req = Req::get(V, "/volumes/detail")
            .query_opt("name", filter.name.as_deref())
            .query_opt("status", filter.status.as_deref());
        self.list(req, "volumes", Paging::Links("volumes_links"))
            .await
    }

    pub async fn delete_volume(&self, id: &str) -> Result<(), ApiError> {
        self.call(Req::delete(V, format!("/volumes/{}", seg(id))))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body() {
        let v = NewVolume {
            size: 20,
            name: Some("root".into()),
            image_id: Some("img".into()),
            ..NewVolume::default()
        };
        assert_eq!(
            v.body(),
            json!({"volume": {"size": 20, "name": "root", "imageRef": "img"}})
        );
    }

    #[test]
    fn cinder_answer() {
        let v: Volume = serde_json::from_value(json!({
            "id": "v", "name": null, "status": "in-use", "size": 20, "bootable": "true",
            "attachments": [{"server_id": "s", "attachment_id": "a", "volume_id": "v",
                             "device": "/dev/vdb", "id": "v", "host_name": null}],
            "metadata": {}
        }))
        .unwrap();
        assert_eq!(v.attachments[0].server_id, "s");
        assert_eq!(v.name, None);
    }
}
