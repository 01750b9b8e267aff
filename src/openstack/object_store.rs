//! Object storage (Swift v1): containers with a read ACL, objects put (bytes or a streamed
//! file) and got, container listings followed past Swift's page size.

use std::path::Path;

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use tokio_util::io::ReaderStream;

use super::client::Cloud;
use super::error::{ApiError, Service};
use super::paging::{object_path, seg};
use super::request::Req;

const S: Service = Service::ObjectStore;

#[derive(Clone, Debug, Deserialize)]
pub struct ObjectInfo {
    pub name: String,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
}

fn object(container: &str, name: &str) -> String {
    format!("/{}/{}", seg(container), object_path(name))
}

impl Cloud {
    /// Creates (or updates) a container; `read_acl` is `X-Container-Read`, e.g. `.r:*,.rlistings`
    /// for a public one.
    pub async fn create_container(
        &self,
        container: &str,
        read_acl: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut req = Req::new(S, Method::PUT, format!("/{}", seg(container)))
            .body(Bytes::new(), "application/octet-stream");
        if let Some(acl) = read_acl {
            req = req.header("x-container-read", acl)?;
        }
        self.call(req).await.map(drop)
    }

    pub async fn delete_container(&self, container: &str) -> Result<(), ApiError> {
        self.call(Req::delete(S, format!("/{}", seg(container))))
            .await
            .map(drop)
    }

    /// Stores a small object from memory (retried like any PUT). Returns its ETag.
    pub async fn put_object(
        &self,
        container: &str,
        name: &str,
        data: Bytes,
        content_type: &'static str,
    ) -> Result<Option<String>, ApiError> {
        let req = Req::new(S, Method::PUT, object(container, name)).body(data, content_type);
        let headers = self.call(req).await?;
        Ok(etag(&headers))
    }

    /// Stores an object streamed from a file (not retried). Returns its ETag.
    pub async fn put_object_file(
        &self,
        container: &str,
        name: &str,
        path: &Path,
        content_type: &'static str,
    ) -> Result<Option<String>, ApiError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ApiError::io("open", path, e))?;
        let metadata = file
            .metadata()
            .await
            .map_err(|e| ApiError::io("read the size of", path, e))?;
        let length = metadata.is_file().then_some(metadata.len());
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, 256 * 1024));
        let req = Req::new(S, Method::PUT, object(container, name));
        let response = self.send_stream(req, body, content_type, length).await?;
        Ok(etag(response.headers()))
    }

    /// An object's content, in memory (for the small files the factory publishes).
    pub async fn get_object(&self, container: &str, name: &str) -> Result<Bytes, ApiError> {
        let req = Req::get(S, object(container, name)).raw();
        let response = self.send(req.clone()).await?;
        response.bytes().await.map_err(|e| {
            super::request::transport_error(S, &Method::GET, &object(container, name), e)
        })
    }

    pub async fn delete_object(&self, container: &str, name: &str) -> Result<(), ApiError> {
        self.call(Req::delete(S, object(container, name)))
            .await
            .map(drop)
    }

    /// Every object of the container (under `prefix` when given), past Swift's page limit.
    pub async fn list_objects(
        &self,
        container: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<ObjectInfo>, ApiError> {
        let mut objects: Vec<ObjectInfo> = Vec::new();
        loop {
            let req = Req::get(S, format!("/{}", seg(container)))
                .query("format", "json")
                .query_opt("prefix", prefix)
                .query_opt("limit", self.options().page_size)
                .query_opt("marker", objects.last().map(|o| o.name.clone()));
            let response = self.send(req.clone()).await?;
            // 204: no (more) objects.
            if response.status() == reqwest::StatusCode::NO_CONTENT {
                return Ok(objects);
            }
            let bytes = response.bytes().await.map_err(|e| {
                super::request::transport_error(S, &Method::GET, &format!("/{}", seg(container)), e)
            })?;
            let page: Vec<ObjectInfo> =
                serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
                    service: S,
                    method: Method::GET,
                    path: format!("/{}", seg(container)),
                    detail: e.to_string(),
                })?;
            // Names sort strictly upwards; a page not moving past the marker would loop.
            let before = objects.last().map(|o| o.name.clone());
            if page.is_empty() || page.last().map(|o| &o.name) <= before.as_ref() {
                return Ok(objects);
            }
            objects.extend(page);
        }
    }
}

fn etag(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string())
}
