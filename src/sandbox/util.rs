//! Small helpers shared by the services: ids, the several timestamp formats OpenStack uses,
//! atomic writes and streamed hashing of request bodies.

use std::io;
use std::path::Path;

use axum::body::Body;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::StreamExt;
use md5::{Digest, Md5};
use rand::RngExt;
use rand::distr::Alphanumeric;
use sha2::Sha512;
use tokio::io::AsyncWriteExt;

/// A dashed UUID, the id format of Nova, Glance, Neutron and Cinder.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A 32-hex-digit id, Keystone's format for users, projects, roles and endpoints.
pub fn hex_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A locally administered MAC with Neutron's default `fa:16:3e` prefix.
pub fn random_mac() -> String {
    let b: [u8; 3] = rand::rng().random();
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Percent-encodes one query key or value (everything but RFC 3986's unreserved characters).
pub fn query_escape(text: &str) -> String {
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

/// The `href` of a list's next page: `url`, the request's query but its `marker`, then the
/// new marker, encoded so that filters holding `&`, `+`, `#` or spaces come back intact.
pub fn next_href(url: &str, query: &[(String, String)], marker: &str) -> String {
    let pairs: Vec<String> = query
        .iter()
        .filter(|(k, _)| k != "marker")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("marker", marker)])
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect();
    format!("{url}?{}", pairs.join("&"))
}

/// Reads and discards a request body. An error answered before the body is read would make
/// the server close the connection while the client still sends, and the client would see a
/// broken pipe instead of the answer; real services behind a WSGI server read it first.
pub async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
}

/// `2019-04-23T15:19:09Z`: Nova's created/updated, Glance's and Neutron's timestamps.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2019-04-23T15:19:10.855016`: Nova's launched_at, Cinder's created_at, Swift's last_modified.
pub fn iso_micro(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// `2015-11-07T02:58:43.578887Z`: Keystone's expires_at and issued_at.
pub fn keystone_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `Wed, 21 Oct 2015 07:28:00 GMT`: the HTTP date of Swift's Last-Modified header.
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// crash leaves either the old or the new content, never half of it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        random_string(8)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What was learnt while streaming a body to disk.
#[derive(Debug, Clone)]
pub struct StreamedFile {
    pub size: u64,
    pub md5: String,
    pub sha512: String,
    /// The first bytes, enough to read a qcow2 header.
    pub head: Vec<u8>,
}

/// Streams a request body into `dest` chunk by chunk, hashing as it goes: an image of several
/// GB never sits in memory. The partial file is removed on error.
pub async fn stream_to_file(body: Body, dest: &Path) -> io::Result<StreamedFile> {
    let result = stream_inner(body, dest).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    result
}

async fn stream_inner(body: Body, dest: &Path) -> io::Result<StreamedFile> {
    let mut file = tokio::fs::File::create(dest).await?;
    let mut md5 = Md5::new();
    let mut sha = Sha512::new();
    let mut size = 0u64;
    let mut head = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(io::Error::other)?;
        md5.update(&chunk);
        sha.update(&chunk);
        if head.len() < 512 {
            let take = (512 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        size += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.sync_data().await?;
    Ok(StreamedFile {
        size,
        md5: hex::encode(md5.finalize()),
        sha512: hex::encode(sha.finalize()),
        head,
    })
}

/// Hashes a file already on disk (a snapshot written by the compute driver).
pub async fn hash_file(path: &Path) -> io::Result<StreamedFile> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut md5 = Md5::new();
    let mut sha = Sha512::new();
    let mut size = 0u64;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
        if head.len() < 512 {
            let take = (512 - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        size += n as u64;
    }
    Ok(StreamedFile {
        size,
        md5: hex::encode(md5.finalize()),
        sha512: hex::encode(sha.finalize()),
        head,
    })
}

/// The virtual size of a disk: a qcow2 header says it (bytes 24..32, big endian); anything
/// else is raw, as large as its file.
pub fn virtual_size(head: &[u8], size: u64) -> u64 {
    if head.len() >= 32 && &head[..4] == b"QFI\xfb" {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[24..32]);
        return u64::from_be_bytes(b);
    }
    size
}

/// Streams a file as a response body.
pub async fn file_body(path: &Path) -> io::Result<(Body, u64)> {
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    Ok((
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_each_service_format() {
        let t = DateTime::parse_from_rfc3339("2019-04-23T15:19:09.855016Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(iso(t), "2019-04-23T15:19:09Z");
        assert_eq!(iso_micro(t), "2019-04-23T15:19:09.855016");
        assert_eq!(keystone_time(t), "2019-04-23T15:19:09.855016Z");
        assert_eq!(http_date(t), "Tue, 23 Apr 2019 15:19:09 GMT");
    }

    #[test]
    fn next_links_keep_filters_intact() {
        let q = vec![
            ("name".to_string(), "a b&c+d#e".to_string()),
            ("marker".to_string(), "old".to_string()),
            ("limit".to_string(), "2".to_string()),
        ];
        assert_eq!(
            next_href("http://h/compute/v2.1/servers", &q, "m-1"),
            "http://h/compute/v2.1/servers?name=a%20b%26c%2Bd%23e&limit=2&marker=m-1"
        );
    }

    #[test]
    fn qcow2_virtual_size_comes_from_the_header() {
        let mut head = b"QFI\xfb\0\0\0\x03".to_vec();
        head.resize(32, 0);
        head[24..32].copy_from_slice(&(10u64 << 30).to_be_bytes());
        assert_eq!(virtual_size(&head, 4096), 10 << 30);
        assert_eq!(virtual_size(b"raw", 3), 3);
    }
}
