//! Image (Glance v2): create, upload (streamed from a file or straight from another server),
//! download, list with filters, JSON-patch updates, delete.
//!
//! Image data never sits in memory whole: uploads and downloads are streams of chunks.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures_util::{Stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::client::Cloud;
use super::error::{ApiError, Service};
use super::paging::{Paging, seg};
use super::request::Req;

const I: Service = Service::Image;

/// Called with the number of bytes transferred so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Keys of an image record that are not image properties.
const RECORD_KEYS: &[&str] = &[
    "self",
    "file",
    "schema",
    "locations",
    "direct_url",
    "stores",
];

#[derive(Clone, Debug, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// queued, saving, uploading, importing, active, deactivated, killed, deleted,
    /// pending_delete.
    pub status: String,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub container_format: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub virtual_size: Option<u64>,
    #[serde(default)]
    pub min_disk: Option<u64>,
    #[serde(default)]
    pub min_ram: Option<u64>,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    #[serde(default)]
    pub os_hash_value: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub protected: bool,
    /// Left out of image lists unless asked for (Glance's own attribute, never a property).
    #[serde(default)]
    pub os_hidden: bool,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Everything else: Glance's free-form properties (`hw_*`, `os_*`, the factory's own).
    #[serde(flatten)]
    pub properties: BTreeMap<String, Value>,
}

impl Image {
    fn without_record_keys(mut self) -> Image {
        self.properties
            .retain(|k, _| !RECORD_KEYS.contains(&k.as_str()));
        self
    }

    /// A property as text (Glance stores them as strings).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }
}

/// A new image record (no data yet).
#[derive(Clone, Debug, Default)]
pub struct NewImage {
    pub name: String,
    /// qcow2, raw, ...
    pub disk_format: String,
    /// bare, ...
    pub container_format: String,
    pub visibility: Option<String>,
    pub min_disk: Option<u64>,
    pub min_ram: Option<u64>,
    pub tags: Vec<String>,
    pub protected: Option<bool>,
    pub properties: BTreeMap<String, String>,
}

impl NewImage {
    fn body(&self) -> Value {
        let mut body = json!({
            "name": self.name,
            "disk_format": self.disk_format,
            "container_format": self.container_format,
        });
        for (key, value) in &self.properties {
            body[key] = json!(value);
        }
        if let Some(v) = &self.visibility {
            body["visibility"] = json!(v);
        }
        if let Some(v) = self.min_disk {
            body["min_disk"] = json!(v);
        }
        if let Some(v) = self.min_ram {
            body["min_ram"] = json!(v);
        }
        if !self.tags.is_empty() {
            body["tags"] = json!(self.tags);
        }
        if let Some(v) = self.protected {
            body["protected"] = json!(v);
        }
        body
    }
}

#[derive(Clone, Debug, Default)]
pub struct ImageFilter {
    pub name: Option<String>,
    pub status: Option<String>,
    pub visibility: Option<String>,
    pub owner: Option<String>,
    /// Images carrying every one of these tags.
    pub tags: Vec<String>,
    /// Images whose property equals the value (`os_distro=debian`).
    pub properties: Vec<(String, String)>,
    /// Page size (the server's default when None).
    pub limit: Option<u32>,
}

/// One change of an image update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageChange {
    Name(String),
    Visibility(String),
    MinDisk(u64),
    MinRam(u64),
    Tags(Vec<String>),
    Protected(bool),
    /// Hidden images stay usable by id but leave default listings (Glance's `os_hidden`).
    Hidden(bool),
    /// Sets a free-form property, adding or replacing it.
    SetProperty(String, String),
    /// Removes a free-form property; nothing happens when it is absent.
    RemoveProperty(String),
}

/// JSON pointer escaping (RFC 6901) of one key.
fn pointer(key: &str) -> String {
    format!("/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// The JSON patch for `changes` against the image as it is now: Glance refuses `add` of a
/// property that exists and `replace` or `remove` of one that does not (409).
pub(crate) fn patch_ops(current: &Image, changes: &[ImageChange]) -> Vec<Value> {
    let replace =
        |path: &str, value: Value| json!({ "op": "replace", "path": path, "value": value });
    changes
        .iter()
        .filter_map(|change| {
            Some(match change {
                ImageChange::Name(v) => replace("/name", json!(v)),
                ImageChange::Visibility(v) => replace("/visibility", json!(v)),
                ImageChange::MinDisk(v) => replace("/min_disk", json!(v)),
                ImageChange::MinRam(v) => replace("/min_ram", json!(v)),
                ImageChange::Tags(v) => replace("/tags", json!(v)),
                ImageChange::Protected(v) => replace("/protected", json!(v)),
                ImageChange::Hidden(v) => replace("/os_hidden", json!(v)),
                ImageChange::SetProperty(key, value) => {
                    let op = if current.properties.contains_key(key) {
                        "replace"
                    } else {
                        "add"
                    };
                    json!({ "op": op, "path": pointer(key), "value": value })
                }
                ImageChange::RemoveProperty(key) => {
                    if !current.properties.contains_key(key) {
                        return None;
                    }
                    json!({ "op": "remove", "path": pointer(key) })
                }
            })
        })
        .collect()
}

/// A stream that reports the running byte count.
fn counted<S, E>(
    stream: S,
    progress: Option<Progress>,
) -> impl Stream<Item = Result<bytes::Bytes, E>>
where
    S: Stream<Item = Result<bytes::Bytes, E>>,
{
    let mut total = 0u64;
    stream.inspect_ok(move |chunk| {
        total += chunk.len() as u64;
        if let Some(report) = &progress {
            report(total);
        }
    })
}

/// Chunk size for reading files: big enough for throughput, small for memory.
const CHUNK: usize = 256 * 1024;

/// Shows a source URL without credentials or query (it may be signed).
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".into(),
    }
}

impl Cloud {
    pub async fn create_image(&self, image: &NewImage) -> Result<Image, ApiError> {
        let image: Image = self.json(Req::post(I, "/images", image.body())).await?;
        Ok(image.without_record_keys())
    }

    pub async fn get_image(&self, id: &str) -> Result<Image, ApiError> {
        let image: Image = self
            .json(Req::get(I, format!("/images/{}", seg(id))))
            .await?;
        Ok(image.without_record_keys())
    }

    pub async fn list_images(&self, filter: &ImageFilter) -> Result<Vec<Image>, ApiError> {
        let mut req = Req::get(I, "/images")
            .query_opt("name", filter.name.as_deref())
            .query_opt("status", filter.status.as_deref())
            .query_opt("visibility", filter.visibility.as_deref())
            .query_opt("owner", filter.owner.as_deref())
            .query_opt("limit", filter.limit);
        for tag in &filter.tags {
            req = req.query("tag", tag);
        }
        for (key, value) in &filter.properties {
            req = req.query(key, value);
        }
        let images: Vec<Image> = self.list(req, "images", Paging::GlanceNext).await?;
        Ok(images.into_iter().map(Image::without_record_keys).collect())
    }

    /// Applies `changes` with one JSON-patch request; returns the updated image.
    pub async fn update_image(&self, id: &str, changes: &[ImageChange]) -> Result<Image, ApiError> {
        let current = self.get_image(id).await?;
        let ops = patch_ops(&current, changes);
        if ops.is_empty() {
            return Ok(current);
        }
        let bytes = serde_json::to_vec(&ops).unwrap_or_default();
        let req = Req::new(I, Method::PATCH, format!("/images/{}", seg(id)))
            .body(bytes.into(), "application/openstack-images-v2.1-json-patch");
        let image: Image = self.json(req).await?;
        Ok(image.without_record_keys())
    }

    pub async fn delete_image(&self, id: &str) -> Result<(), ApiError> {
        self.call(Req::delete(I, format!("/images/{}", seg(id))))
            .await
            .map(drop)
    }

    /// Uploads the image data from a file, streamed (the image must be `queued`).
    pub async fn upload_image_file(
        &self,
        id: &str,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<(), ApiError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ApiError::io("open", path, e))?;
        let metadata = file
            .metadata()
            .await
            .map_err(|e| ApiError::io("read the size of", path, e))?;
        // A pipe or device has no meaningful length: send it chunked.
        let length = metadata.is_file().then_some(metadata.len());
        let stream = counted(ReaderStream::with_capacity(file, CHUNK), progress);
        let req = Req::new(I, Method::PUT, format!("/images/{}/file", seg(id)));
        let response = self
            .send_stream(
                req,
                reqwest::Body::wrap_stream(stream),
                "application/octet-stream",
                length,
            )
            .await?;
        let _ = response.bytes().await;
        Ok(())
    }

    /// Uploads the image data straight from `source_url` (HTTP or HTTPS): the download is
    /// piped into the upload, nothing is stored on the way.
    pub async fn upload_image_from_url(
        &self,
        id: &str,
        source_url: &str,
        progress: Option<Progress>,
    ) -> Result<(), ApiError> {
        let failed = |detail: String| ApiError::Download {
            url: shown_url(source_url),
            detail,
        };
        let source = self
            .download_client()
            .get(source_url)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if !source.status().is_success() {
            return Err(failed(source.status().to_string()));
        }
        let length = source.content_length();
        let stream = counted(source.bytes_stream(), progress);
        let req = Req::new(I, Method::PUT, format!("/images/{}/file", seg(id)));
        let response = self
            .send_stream(
                req,
                reqwest::Body::wrap_stream(stream),
                "application/octet-stream",
                length,
            )
            .await?;
        let _ = response.bytes().await;
        Ok(())
    }

    /// Downloads the image data into `path`, streamed, checking Glance's `Content-MD5` when it
    /// sends one. A partial file is removed on failure.
    pub async fn download_image(
        &self,
        id: &str,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<u64, ApiError> {
        let req = Req::get(I, format!("/images/{}/file", seg(id))).raw();
        let response = self.send(req.clone()).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Err(ApiError::Invalid(format!("image {id} has no data")));
        }
        let expected_md5 = response
            .headers()
            .get("content-md5")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let result = write_stream(response, path, progress).await;
        let (written, md5) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = tokio::fs::remove_file(path).await;
                return Err(e);
            }
        };
        if let Some(expected) = expected_md5
            && expected != md5
        {
            let _ = tokio::fs::remove_file(path).await;
            return Err(ApiError::Checksum {
                what: format!("download of image {id}"),
                expected,
                actual: md5,
            });
        }
        Ok(written)
    }
}

/// Writes a response body to a file chunk by chunk; returns the size and the MD5 (hex).
async fn write_stream(
    response: reqwest::Response,
    path: &Path,
    progress: Option<Progress>,
) -> Result<(u64, String), ApiError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::io("create", path, e))?;
    let mut md5 = Md5::new();
    let mut written = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::Download {
            url: "image data".into(),
            detail: e.without_url().to_string(),
        })?;
        md5.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::io("write", path, e))?;
        written += chunk.len() as u64;
        if let Some(report) = &progress {
            report(written);
        }
    }
    file.flush()
        .await
        .map_err(|e| ApiError::io("write", path, e))?;
    Ok((written, hex::encode(md5.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(properties: Value) -> Image {
        let mut record = json!({
            "id": "i1", "name": "debian", "status": "active", "visibility": "private",
            "self": "/v2/images/i1", "file": "/v2/images/i1/file", "schema": "/v2/schemas/image",
            "min_disk": 0, "min_ram": 0, "tags": [], "virtual_size": null,
        });
        for (k, v) in properties.as_object().unwrap() {
            record[k] = v.clone();
        }
        serde_json::from_value::<Image>(record)
            .unwrap()
            .without_record_keys()
    }

    #[test]
    fn properties_are_the_unknown_keys() {
        let img = image(json!({"os_distro": "debian", "hw_disk_bus": "scsi"}));
        assert_eq!(
            img.properties.keys().collect::<Vec<_>>(),
            ["hw_disk_bus", "os_distro"]
        );
        assert_eq!(img.property("os_distro"), Some("debian"));
        assert_eq!(img.virtual_size, None);
    }

    #[test]
    fn patch_adds_or_replaces_by_presence() {
        let img = image(json!({"os_distro": "debian", "a/b~c": "x"}));
        let ops = patch_ops(
            &img,
            &[
                ImageChange::Name("n".into()),
                ImageChange::Visibility("public".into()),
                ImageChange::MinDisk(10),
                ImageChange::MinRam(512),
                ImageChange::Tags(vec!["factory".into()]),
                ImageChange::SetProperty("os_distro".into(), "ubuntu".into()),
                ImageChange::SetProperty("factory_build".into(), "b1".into()),
                ImageChange::RemoveProperty("a/b~c".into()),
                ImageChange::RemoveProperty("absent".into()),
            ],
        );
        assert_eq!(
            Value::Array(ops),
            json!([
                {"op": "replace", "path": "/name", "value": "n"},
                {"op": "replace", "path": "/visibility", "value": "public"},
                {"op": "replace", "path": "/min_disk", "value": 10},
                {"op": "replace", "path": "/min_ram", "value": 512},
                {"op": "replace", "path": "/tags", "value": ["factory"]},
                {"op": "replace", "path": "/os_distro", "value": "ubuntu"},
                {"op": "add", "path": "/factory_build", "value": "b1"},
                {"op": "remove", "path": "/a~1b~0c"}
            ])
        );
    }

    #[test]
    fn new_image_body() {
        let mut new = NewImage {
            name: "x".into(),
            disk_format: "qcow2".into(),
            container_format: "bare".into(),
            visibility: Some("private".into()),
            min_disk: Some(10),
            ..NewImage::default()
        };
        new.properties.insert("os_distro".into(), "debian".into());
        assert_eq!(
            new.body(),
            json!({"name": "x", "disk_format": "qcow2", "container_format": "bare",
                   "visibility": "private", "min_disk": 10, "os_distro": "debian"})
        );
    }

    #[test]
    fn source_urls_are_shown_without_secrets() {
        assert_eq!(
            shown_url("https://user:pw@mirror.example/img.qcow2?sig=abc"),
            "https://mirror.example/img.qcow2"
        );
    }
}
