//! `source.url` against a real HTTP server on loopback: Range resumes, checksums, SUMS files, the
//! cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use image_factory::catalog::{Checksum, Source, Upstream};
use image_factory::osimage::{
    self, BaseImage, OsImageError, OsImageEvent, OsImageOptions, SourceKind, Step,
};
use sha2::{Digest, Sha256, Sha512};

const SIZE: usize = 4 << 20;
const ETAG: &str = "\"v1\"";

struct Served {
    image: Bytes,
    sums: String,
    /// The first GET of the image stops after this many bytes, as a dropped connection does.
    cut_first_at: Option<usize>,
    /// The Range header of every GET of the image.
    ranges: Mutex<Vec<Option<String>>>,
}

fn image_bytes() -> Bytes {
    let mut x: u32 = 0x1234_5678;
    (0..SIZE)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn serve_image(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    let range = headers
        .get(header::RANGE)
        .map(|v| v.to_str().unwrap().to_string());
    let first = {
        let mut ranges = s.ranges.lock().unwrap();
        ranges.push(range.clone());
        ranges.len() == 1
    };
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().unwrap() == ETAG);
    let start = range
        .as_deref()
        .and_then(|r| {
            r.strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse::<usize>()
                .ok()
        })
        .filter(|_| if_range_ok);
    let (status, start) = match start {
        Some(n) if n >= SIZE => return StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
        Some(n) => (StatusCode::PARTIAL_CONTENT, n),
        None => (StatusCode::OK, 0),
    };
    let body = s.image.slice(start..);
    let len = body.len();
    let chunks: Vec<Bytes> = (0..len)
        .step_by(64 << 10)
        .map(|i| body.slice(i..(i + (64 << 10)).min(len)))
        .collect();
    let cut = s.cut_first_at.filter(|_| first);
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), 0usize, false),
        move |(mut chunks, sent, failed)| async move {
            if failed {
                return None;
            }
            if cut.is_some_and(|c| sent >= c) {
                // Let what was sent reach the client, then fail the body mid-way.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let err = std::io::Error::other("connection dropped by the test");
                return Some((Err(err), (chunks, sent, true)));
            }
            let chunk = chunks.next()?;
            let n = chunk.len();
            Some((Ok(chunk), (chunks, sent + n, false)))
        },
    );
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ETAG, ETAG)
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{SIZE}", SIZE - 1),
        );
    }
    resp.body(Body::from_stream(stream)).unwrap()
}

async fn server(cut_first_at: Option<usize>, sums: String) -> (String, Arc<Served>) {
    let served = Arc::new(Served {
        image: image_bytes(),
        sums,
        cut_first_at,
        ranges: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/images/disk.qcow2", get(serve_image))
        .route(
            "/images/SHA512SUMS",
            get(|State(s): State<Arc<Served>>| async move { s.sums.clone() }),
        )
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/images"), served)
}

fn source(url: &str, checksum: Checksum) -> Source {
    Source {
        upstream: Some(Upstream {
            url: format!("{url}/disk.qcow2"),
            checksum,
            disk_format: "qcow2".into(),
        }),
        debootstrap: None,
    }
}

fn options(dir: &tempfile::TempDir, attempts: u32) -> OsImageOptions {
    OsImageOptions {
        data_dir: dir.path().to_path_buf(),
        download_attempts: attempts,
        ..OsImageOptions::default()
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn produce(
    src: &Source,
    opts: &OsImageOptions,
) -> (Result<BaseImage, OsImageError>, Vec<OsImageEvent>) {
    let mut events = Vec::new();
    let result =
        osimage::produce("debian-12", src, SourceKind::Url, opts, |e| events.push(e)).await;
    (result, events)
}

fn part_file(opts: &OsImageOptions) -> std::path::PathBuf {
    opts.cache_dir().join("debian-12/disk.qcow2.part")
}

#[tokio::test]
async fn downloads_verify_and_the_cache_is_reused_while_it_matches() {
    let (url, served) = server(None, String::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&dir, 1);
    let want = sha256_hex(&served.image);
    let src = source(&url, Checksum::Sha256(want.clone()));

    let (image, events) = produce(&src, &opts).await;
    let image = image.unwrap();
    assert!(!image.from_cache);
    assert_eq!(image.sha256, want);
    assert_eq!(image.size, SIZE as u64);
    assert_eq!(image.disk_format, "qcow2");
    assert_eq!(std::fs::read(&image.path).unwrap(), served.image.as_ref());
    assert!(events.contains(&OsImageEvent::StepStarted {
        step: Step::Download
    }));
    assert!(events.iter().any(|e| matches!(
        e,
        OsImageEvent::Progress { step: Step::Download, done, total: Some(t) } if *done == *t
    )));
    assert!(!part_file(&opts).exists());

    let (again, _) = produce(&src, &opts).await;
    assert!(again.unwrap().from_cache);
    assert_eq!(served.ranges.lock().unwrap().len(), 1, "no second download");

    // A cached file that no longer matches is downloaded again.
    std::fs::write(&image.path, b"stale").unwrap();
    let (third, _) = produce(&src, &opts).await;
    let third = third.unwrap();
    assert!(!third.from_cache);
    assert_eq!(third.sha256, want);
    assert_eq!(served.ranges.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_interrupted_download_resumes_with_a_range_request() {
    let cut = 3 << 19; // 1.5 MiB
    let (url, served) = server(Some(cut), String::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&dir, 1);
    let src = source(&url, Checksum::Sha256(sha256_hex(&served.image)));

    let (first, _) = produce(&src, &opts).await;
    let err = first.unwrap_err();
    assert!(matches!(err, OsImageError::Network { .. }), "{err}");
    assert!(err.to_string().contains("resume"), "{err}");
    let kept = std::fs::metadata(part_file(&opts)).unwrap().len();
    assert!(
        kept > 0 && kept <= cut as u64,
        "partial file of {kept} bytes"
    );

    let (second, _) = produce(&src, &opts).await;
    let image = second.unwrap();
    assert_eq!(std::fs::read(&image.path).unwrap(), served.image.as_ref());
    let ranges = served.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![None, Some(format!("bytes={kept}-"))]);
}

#[tokio::test]
async fn retries_within_one_production_resume_too() {
    let (url, served) = server(Some(1 << 20), String::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&dir, 3);
    let src = source(&url, Checksum::Sha256(sha256_hex(&served.image)));
    let (image, events) = produce(&src, &opts).await;
    assert_eq!(image.unwrap().sha256, sha256_hex(&served.image));
    let ranges = served.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 2);
    assert!(
        ranges[1]
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes="))
    );
    assert!(events.iter().any(|e| matches!(
        e,
        OsImageEvent::Log { step: Step::Download, line } if line.contains("resuming")
    )));
}

#[tokio::test]
async fn a_checksum_mismatch_names_both_digests_and_removes_the_file() {
    let (url, served) = server(None, String::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&dir, 1);
    let wrong = "0".repeat(64);
    let src = source(&url, Checksum::Sha256(wrong.clone()));
    let (result, _) = produce(&src, &opts).await;
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, OsImageError::ChecksumMismatch { .. }),
        "{text}"
    );
    assert!(text.contains(&format!("sha256:{wrong}")), "{text}");
    assert!(text.contains(&sha256_hex(&served.image)), "{text}");
    assert!(text.contains(&format!("{url}/disk.qcow2")), "{text}");
    assert!(!part_file(&opts).exists());
    assert!(!opts.cache_dir().join("debian-12/disk.qcow2").exists());
}

#[tokio::test]
async fn a_sums_file_gives_the_expected_digest() {
    let image = image_bytes();
    let sha512 = hex::encode(Sha512::digest(&image));
    let sums = format!("{}  other.qcow2\n{sha512}  disk.qcow2\n", "1".repeat(128));
    let (url, _) = server(None, sums).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&dir, 1);
    let src = source(&url, Checksum::SumsFile(format!("{url}/SHA512SUMS")));
    let (result, events) = produce(&src, &opts).await;
    assert_eq!(result.unwrap().sha256, sha256_hex(&image));
    assert!(events.contains(&OsImageEvent::StepStarted {
        step: Step::Checksums
    }));

    // A SUMS file without the image's name says so.
    let (url, _) = server(None, format!("{sha512}  other.qcow2\n")).await;
    let src = source(&url, Checksum::SumsFile(format!("{url}/SHA512SUMS")));
    let (result, _) = produce(&src, &options(&tempfile::tempdir().unwrap(), 1)).await;
    let err = result.unwrap_err();
    assert!(matches!(err, OsImageError::NotInSums { .. }), "{err}");
    assert!(err.to_string().contains("disk.qcow2"));
}

#[tokio::test]
async fn a_file_address_is_copied_and_verified_like_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("mirror/disk.qcow2");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    let image = image_bytes();
    std::fs::write(&local, &image).unwrap();
    let opts = options(&dir, 1);
    let url = format!("file://{}", local.parent().unwrap().display());
    let src = source(&url, Checksum::Sha256(sha256_hex(&image)));
    let (result, _) = produce(&src, &opts).await;
    let result = result.unwrap();
    assert!(!result.from_cache);
    assert_eq!(std::fs::read(&result.path).unwrap(), image.as_ref());
}
