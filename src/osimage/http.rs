//! One resumable download over HTTP: attempts that continue from the partial file's end with a
//! Range request, hashing as the bytes arrive, so the image is never held in memory.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::{Client, StatusCode};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::digest::{self, Algorithm, Digests, Hasher};
use super::download::sibling;
use super::error::OsImageError;
use super::events::{Reporter, Step};

/// Progress events every so many bytes.
const TICK_BYTES: u64 = 4 << 20;

/// Why one attempt stopped: worth another try (network, 5xx), or not.
enum Stop {
    Retry(String),
    Fatal(OsImageError),
}

pub(crate) async fn download(
    client: &Client,
    url: &str,
    part: &Path,
    algorithm: Algorithm,
    attempts: u32,
    rep: &mut Reporter<'_>,
) -> Result<Digests, OsImageError> {
    let attempts = attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let message = match download_once(client, url, part, algorithm, rep).await {
            Ok(digests) => return Ok(digests),
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Retry(message)) => message,
        };
        let done = file_len(part).await;
        if attempt >= attempts {
            return Err(OsImageError::Network {
                url: url.to_string(),
                done,
                attempts,
                message,
            });
        }
        rep.log(
            Step::Download,
            format!("attempt {attempt} stopped at byte {done}: {message}; resuming"),
        );
        tokio::time::sleep(Duration::from_millis(500 << attempt.min(6))).await;
    }
}

async fn file_len(path: &Path) -> u64 {
    tokio::fs::metadata(path)
        .await
        .map(|m| m.len())
        .unwrap_or(0)
}

/// One GET: from the partial file's end when there is one (Range, with If-Range so that a file
/// changed upstream restarts from zero instead of splicing two versions).
async fn download_once(
    client: &Client,
    url: &str,
    part: &Path,
    algorithm: Algorithm,
    rep: &mut Reporter<'_>,
) -> Result<Digests, Stop> {
    let step = Step::Download;
    let validator_file = sibling(part, ".validator");
    let mut offset = file_len(part).await;
    let mut hasher = Hasher::new(algorithm);
    let mut request = client.get(url);
    if offset > 0 {
        let (digests_so_far, hashed) = hash_prefix(part, algorithm).await.map_err(Stop::Fatal)?;
        hasher = digests_so_far;
        offset = hashed;
        request = request.header(RANGE, format!("bytes={offset}-"));
        if let Ok(v) = tokio::fs::read_to_string(&validator_file).await {
            request = request.header(IF_RANGE, v.trim());
        }
    }
    let mut resp = request
        .send()
        .await
        .map_err(|e| Stop::Retry(error_chain(&e)))?;
    let status = resp.status();
    let resumed = status == StatusCode::PARTIAL_CONTENT && range_start(&resp) == Some(offset);
    if status == StatusCode::RANGE_NOT_SATISFIABLE
        || (status.is_success() && !resumed && offset > 0)
    {
        rep.log(
            step,
            format!("the server did not resume at byte {offset}: starting over"),
        );
        if status != StatusCode::OK {
            let _ = tokio::fs::remove_file(part).await;
            return Err(Stop::Retry(format!("HTTP {status} to a resume request")));
        }
    }
    if !status.is_success() {
        return Err(
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                Stop::Retry(format!("HTTP {status}"))
            } else {
                Stop::Fatal(OsImageError::Http {
                    step,
                    url: url.to_string(),
                    status: status.as_u16(),
                })
            },
        );
    }
    let io = |what: &str| {
        let what = format!("{what} {}", part.display());
        move |e| Stop::Fatal(OsImageError::io(step, what)(e))
    };
    let file = if resumed {
        tokio::fs::OpenOptions::new()
            .append(true)
            .open(part)
            .await
            .map_err(io("append to"))?
    } else {
        offset = 0;
        hasher = Hasher::new(algorithm);
        match validator(&resp) {
            Some(v) => tokio::fs::write(&validator_file, v)
                .await
                .map_err(io("write"))?,
            None => {
                let _ = tokio::fs::remove_file(&validator_file).await;
            }
        }
        tokio::fs::File::create(part).await.map_err(io("create"))?
    };
    let total = resp.content_length().map(|n| n + offset);
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let (mut done, mut next_tick) = (offset, offset + TICK_BYTES);
    rep.progress(step, done, total);
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                hasher.update(&bytes);
                out.write_all(&bytes).await.map_err(io("write"))?;
                done += bytes.len() as u64;
                if done >= next_tick {
                    rep.progress(step, done, total);
                    next_tick = done + TICK_BYTES;
                }
            }
            Ok(None) => break,
            Err(e) => {
                // Keep what arrived: the next attempt resumes from the file's end.
                out.flush().await.map_err(io("write"))?;
                return Err(Stop::Retry(error_chain(&e)));
            }
        }
    }
    out.flush().await.map_err(io("write"))?;
    out.get_ref().sync_all().await.map_err(io("sync"))?;
    rep.progress(step, done, total);
    if total.is_some_and(|t| t != done) {
        return Err(Stop::Retry(format!("the connection closed at byte {done}")));
    }
    Ok(hasher.finish())
}

/// Hashes the partial file into a hasher that the rest of the download continues.
async fn hash_prefix(part: &Path, algorithm: Algorithm) -> Result<(Hasher, u64), OsImageError> {
    let owned = part.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut hasher = Hasher::new(algorithm);
        let n = digest::hash_file(&owned, &mut hasher, |_| {})?;
        Ok::<_, std::io::Error>((hasher, n))
    })
    .await
    .map_err(|e| OsImageError::invalid(Step::Download, format!("checksum task: {e}")))?
    .map_err(OsImageError::io(
        Step::Download,
        format!("read {}", part.display()),
    ))
}

/// `Content-Range: bytes 100-199/200` → 100.
fn range_start(resp: &reqwest::Response) -> Option<u64> {
    let value = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    value
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// What If-Range may carry: a strong ETag, else Last-Modified.
fn validator(resp: &reqwest::Response) -> Option<String> {
    let h = resp.headers();
    h.get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.starts_with("W/"))
        .or_else(|| h.get(LAST_MODIFIED).and_then(|v| v.to_str().ok()))
        .map(str::to_string)
}

/// reqwest's top error says little ("error decoding response body"); its causes say why.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
