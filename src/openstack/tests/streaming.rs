//! Image data is streamed: uploads start before the source is fully read, nothing is buffered
//! whole, and a failed stream is not replayed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::routing::{get, put};
use futures_util::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256};

use super::fake::{Fake, counter, reply};
use crate::openstack::ApiError;
use crate::openstack::image::Progress;

const MIB: usize = 1024 * 1024;

/// Deterministic, incompressible-looking test data.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// What an upload route saw.
#[derive(Default)]
struct Received {
    bytes: AtomicU64,
    sha256: Mutex<String>,
    content_length: Mutex<Option<String>>,
    first_chunk: Mutex<Option<mpsc::Sender<()>>>,
    notify: tokio::sync::Notify,
    calls: AtomicUsize,
}

/// `PUT /image/v2/images/{id}/file` that hashes what it receives, chunk by chunk, and signals
/// its first chunk.
fn upload_route(received: Arc<Received>, status: u16) -> Router {
    Router::new().route(
        "/image/v2/images/{id}/file",
        put(move |headers: HeaderMap, body: Body| {
            let received = received.clone();
            async move {
                received.calls.fetch_add(1, Ordering::SeqCst);
                *received.content_length.lock().unwrap() = headers
                    .get("content-length")
                    .map(|v| v.to_str().unwrap().to_string());
                let mut hash = Sha256::new();
                let mut stream = body.into_data_stream();
                while let Some(chunk) = stream.next().await {
                    let Ok(chunk) = chunk else { break };
                    if received.bytes.load(Ordering::SeqCst) == 0 {
                        if let Some(tx) = received.first_chunk.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                        received.notify.notify_one();
                    }
                    received
                        .bytes
                        .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    hash.update(&chunk);
                }
                *received.sha256.lock().unwrap() = hex::encode(hash.finalize());
                reply(status, &[], "")
            }
        }),
    )
}

#[tokio::test]
async fn upload_from_a_pipe_streams_before_the_end_of_the_source() {
    let received = Arc::new(Received::default());
    let (tx, rx) = mpsc::channel();
    *received.first_chunk.lock().unwrap() = Some(tx);
    let r = received.clone();
    let fake = Fake::start(move |_| upload_route(r, 204)).await;
    let cloud = fake.connect().await;

    // A FIFO: the client cannot know its size nor read it all in advance. The writer holds
    // back the second half until the server has received bytes: a client that buffered the
    // whole source would never send any.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("image.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (first, second) = (data(4 * MIB, 1), data(4 * MIB, 2));
    let mut whole = first.clone();
    whole.extend_from_slice(&second);
    let streamed = Arc::new(AtomicBool::new(false));
    let flag = streamed.clone();
    let path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let mut pipe = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        pipe.write_all(&first).unwrap();
        flag.store(
            rx.recv_timeout(Duration::from_secs(20)).is_ok(),
            Ordering::SeqCst,
        );
        pipe.write_all(&second).unwrap();
    });

    let progress_seen = Arc::new(AtomicU64::new(0));
    let p = progress_seen.clone();
    let progress: Progress = Arc::new(move |n| p.store(n, Ordering::SeqCst));
    cloud
        .upload_image_file("img", &fifo, Some(progress))
        .await
        .unwrap();
    writer.join().unwrap();
    assert!(
        streamed.load(Ordering::SeqCst),
        "nothing reached the server before the source ended"
    );
    assert_eq!(received.bytes.load(Ordering::SeqCst), 8 * MIB as u64);
    assert_eq!(
        *received.sha256.lock().unwrap(),
        hex::encode(Sha256::digest(&whole))
    );
    assert_eq!(progress_seen.load(Ordering::SeqCst), 8 * MIB as u64);
    // A pipe has no length: sent chunked.
    assert_eq!(*received.content_length.lock().unwrap(), None);
}

#[tokio::test]
async fn upload_from_a_file_sends_its_length() {
    let received = Arc::new(Received::default());
    let r = received.clone();
    let fake = Fake::start(move |_| upload_route(r, 204)).await;
    let cloud = fake.connect().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let content = data(5 * MIB + 123, 3);
    std::fs::write(file.path(), &content).unwrap();
    cloud
        .upload_image_file("img", file.path(), None)
        .await
        .unwrap();
    assert_eq!(
        *received.content_length.lock().unwrap(),
        Some(content.len().to_string())
    );
    assert_eq!(
        *received.sha256.lock().unwrap(),
        hex::encode(Sha256::digest(&content))
    );

    let missing = cloud
        .upload_image_file("img", std::path::Path::new("/nonexistent/x.qcow2"), None)
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("cannot open /nonexistent/x.qcow2: "),
        "{missing}"
    );
}

#[tokio::test]
async fn upload_from_url_pipes_the_download_into_the_upload() {
    let received = Arc::new(Received::default());
    let streamed = Arc::new(AtomicBool::new(false));
    let (first, second) = (data(4 * MIB, 4), data(4 * MIB, 5));
    let mut whole = first.clone();
    whole.extend_from_slice(&second);
    let (r, s) = (received.clone(), streamed.clone());
    let fake = Fake::start(move |_| {
        let (r_source, s_source) = (r.clone(), s);
        let source = move || {
            let (r, s) = (r_source.clone(), s_source.clone());
            let halves = [first.clone(), second.clone()];
            async move {
                // The second half is served only once the upload has received bytes.
                let body = futures_util::stream::iter(halves.into_iter().enumerate()).then(
                    move |(half, chunk)| {
                        let (r, s) = (r.clone(), s.clone());
                        async move {
                            if half == 1 {
                                let got = tokio::time::timeout(
                                    Duration::from_secs(20),
                                    r.notify.notified(),
                                );
                                s.store(got.await.is_ok(), Ordering::SeqCst);
                            }
                            Ok::<_, std::io::Error>(bytes::Bytes::from(chunk))
                        }
                    },
                );
                let length = (8 * MIB).to_string();
                reply(200, &[("content-length", &length)], Body::from_stream(body))
            }
        };
        upload_route(r, 204).route("/source/debian.qcow2", get(source))
    })
    .await;
    let cloud = fake.connect().await;
    let url = format!("{}/source/debian.qcow2", fake.base);
    cloud
        .upload_image_from_url("img", &url, None)
        .await
        .unwrap();
    assert!(
        streamed.load(Ordering::SeqCst),
        "the upload waited for the whole download"
    );
    assert_eq!(
        *received.sha256.lock().unwrap(),
        hex::encode(Sha256::digest(&whole))
    );
    assert_eq!(
        *received.content_length.lock().unwrap(),
        Some((8 * MIB).to_string())
    );

    let err = cloud
        .upload_image_from_url(
            "img",
            &format!("{}/source/missing?sig=s3cret", fake.base),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "download of {}/source/missing failed: 404 Not Found",
            fake.base
        )
    );
}

#[tokio::test]
async fn a_failed_streamed_upload_is_not_replayed() {
    let received = Arc::new(Received::default());
    let r = received.clone();
    let fake = Fake::start(move |_| upload_route(r, 503)).await;
    let cloud = fake.connect().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data(MIB, 6)).unwrap();
    let err = cloud
        .upload_image_file("img", file.path(), None)
        .await
        .unwrap_err();
    assert_eq!(received.calls.load(Ordering::SeqCst), 1);
    assert!(matches!(err, ApiError::NotReplayed { .. }), "{err:?}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(
        err.to_string(),
        "image PUT /images/img/file failed: 503 Service Unavailable (not retried: a streamed \
         upload cannot be replayed; start it again)"
    );
}

#[tokio::test]
async fn download_is_streamed_to_a_file_and_checked() {
    let content = Arc::new(data(3 * MIB + 7, 7));
    let calls = counter();
    let (c, k) = (content.clone(), calls.clone());
    let fake = Fake::start(move |_| {
        Router::new().route(
            "/image/v2/images/{id}/file",
            get(
                move |axum::extract::Path(id): axum::extract::Path<String>| {
                    k.fetch_add(1, Ordering::SeqCst);
                    let c = c.clone();
                    async move {
                        let md5 = if id == "good" {
                            hex::encode(Md5::digest(c.as_slice()))
                        } else {
                            "0".repeat(32)
                        };
                        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = c
                            .chunks(64 * 1024)
                            .map(|ch| Ok(bytes::Bytes::copy_from_slice(ch)))
                            .collect();
                        reply(
                            200,
                            &[
                                ("content-md5", &md5),
                                ("content-type", "application/octet-stream"),
                            ],
                            Body::from_stream(futures_util::stream::iter(chunks)),
                        )
                    }
                },
            ),
        )
    })
    .await;
    let cloud = fake.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("good.qcow2");
    let size = cloud.download_image("good", &target, None).await.unwrap();
    assert_eq!(size, content.len() as u64);
    assert_eq!(std::fs::read(&target).unwrap(), *content);

    let bad = dir.path().join("bad.qcow2");
    let err = cloud.download_image("bad", &bad, None).await.unwrap_err();
    assert!(matches!(err, ApiError::Checksum { .. }), "{err:?}");
    assert!(!bad.exists(), "a corrupt download was left behind");
}
