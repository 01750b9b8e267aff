//! `source.url`: an upstream cloud image downloaded into the cache, resumed with HTTP Range after
//! an interruption, verified while it streams, and reused while its checksum still matches.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Client, Url};

use crate::catalog::{Checksum, Upstream};

use super::digest::{self, Algorithm, Digests, Expected, Hasher};
use super::error::OsImageError;
use super::events::{Reporter, Step};
use super::http::{self, error_chain};
use super::{BaseImage, OsImageOptions};

/// A SHA*SUMS file larger than this is not one.
const MAX_SUMS_BYTES: usize = 4 << 20;

pub(crate) async fn fetch(
    def: &str,
    up: &Upstream,
    opts: &OsImageOptions,
    rep: &mut Reporter<'_>,
) -> Result<BaseImage, OsImageError> {
    let file_name = file_name_of(&up.url)?;
    let dir = opts.cache_dir().join(def);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(OsImageError::io(
            Step::Download,
            format!("create {}", dir.display()),
        ))?;
    let client = Client::builder()
        .user_agent(concat!("image-factory/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| OsImageError::invalid(Step::Download, format!("HTTP client: {e}")))?;
    let expected = expected_digest(&client, &up.checksum, &file_name, rep).await?;
    let dest = dir.join(&file_name);
    let image = |sha256: String, size: u64, from_cache: bool| BaseImage {
        path: dest.clone(),
        disk_format: up.disk_format.clone(),
        size,
        sha256,
        from_cache,
    };

    if dest.is_file() {
        let started = rep.start(Step::Cache);
        let (digests, size) = hash_path(&dest, expected.algorithm, Step::Cache, rep).await?;
        rep.finish(Step::Cache, started);
        if digests.get(expected.algorithm) == expected.hex {
            return Ok(image(digests.sha256, size, true));
        }
        rep.log(
            Step::Cache,
            format!(
                "{} no longer matches the expected checksum: downloading again",
                dest.display()
            ),
        );
        remove_if_present(&dest).await?;
    }

    let started = rep.start(Step::Download);
    let part = sibling(&dest, ".part");
    let digests = if up.url.starts_with("file://") {
        copy_local(&up.url, &part, expected.algorithm).await?
    } else {
        http::download(
            &client,
            &up.url,
            &part,
            expected.algorithm,
            opts.download_attempts,
            rep,
        )
        .await?
    };
    let actual = digests.get(expected.algorithm);
    if actual != expected.hex {
        remove_if_present(&part).await?;
        remove_if_present(&sibling(&part, ".validator")).await?;
        return Err(OsImageError::ChecksumMismatch {
            url: up.url.clone(),
            algorithm: expected.algorithm.name(),
            expected: expected.hex,
            actual: actual.to_string(),
        });
    }
    let size = tokio::fs::metadata(&part)
        .await
        .map_err(OsImageError::io(
            Step::Download,
            format!("read {}", part.display()),
        ))?
        .len();
    tokio::fs::rename(&part, &dest)
        .await
        .map_err(OsImageError::io(
            Step::Download,
            format!("rename {}", part.display()),
        ))?;
    remove_if_present(&sibling(&part, ".validator")).await?;
    rep.finish(Step::Download, started);
    Ok(image(digests.sha256, size, false))
}

/// The cached file's name: the last segment of the URL's path.
fn file_name_of(url: &str) -> Result<String, OsImageError> {
    Url::parse(url)
        .ok()
        .and_then(|u| u.path_segments()?.next_back().map(str::to_string))
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
        .ok_or_else(|| {
            OsImageError::invalid(
                Step::Download,
                format!("`source.url` {url} does not end with a file name"),
            )
        })
}

pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

async fn remove_if_present(path: &Path) -> Result<(), OsImageError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(OsImageError::Io {
            step: Step::Download,
            what: format!("remove {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

async fn expected_digest(
    client: &Client,
    checksum: &Checksum,
    file_name: &str,
    rep: &mut Reporter<'_>,
) -> Result<Expected, OsImageError> {
    let (algorithm, hex) = match checksum {
        Checksum::Sha256(hex) => (Algorithm::Sha256, hex),
        Checksum::Sha512(hex) => (Algorithm::Sha512, hex),
        Checksum::SumsFile(sums_url) => {
            let started = rep.start(Step::Checksums);
            let text = fetch_text(client, sums_url).await?;
            rep.finish(Step::Checksums, started);
            return digest::find_in_sums(&text, file_name).ok_or_else(|| OsImageError::NotInSums {
                sums_url: sums_url.clone(),
                file: file_name.to_string(),
            });
        }
    };
    Ok(Expected {
        algorithm,
        hex: hex.to_ascii_lowercase(),
    })
}

async fn fetch_text(client: &Client, url: &str) -> Result<String, OsImageError> {
    let step = Step::Checksums;
    if let Some(path) = local_path(url) {
        return tokio::fs::read_to_string(&path)
            .await
            .map_err(OsImageError::io(step, format!("read {}", path.display())));
    }
    let network = |e: reqwest::Error| OsImageError::Network {
        url: url.to_string(),
        done: 0,
        attempts: 1,
        message: error_chain(&e),
    };
    let resp = client.get(url).send().await.map_err(network)?;
    if !resp.status().is_success() {
        return Err(OsImageError::Http {
            step,
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    if resp.content_length().unwrap_or(0) > MAX_SUMS_BYTES as u64 {
        return Err(OsImageError::invalid(
            step,
            format!("{url} is larger than a checksum file can be"),
        ));
    }
    resp.text().await.map_err(network)
}

fn local_path(url: &str) -> Option<PathBuf> {
    Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "file")?
        .to_file_path()
        .ok()
}

/// Hashes a file already on disk, on the blocking pool.
async fn hash_path(
    path: &Path,
    algorithm: Algorithm,
    step: Step,
    rep: &mut Reporter<'_>,
) -> Result<(Digests, u64), OsImageError> {
    let owned = path.to_path_buf();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        let mut hasher = Hasher::new(algorithm);
        let size = digest::hash_file(&owned, &mut hasher, |done| {
            let _ = tx.send(done);
        })?;
        Ok::<_, std::io::Error>((hasher.finish(), size))
    });
    while let Some(done) = rx.recv().await {
        rep.progress(step, done, None);
    }
    task.await
        .map_err(|e| OsImageError::invalid(step, format!("checksum task: {e}")))?
        .map_err(OsImageError::io(step, format!("read {}", path.display())))
}

async fn copy_local(url: &str, part: &Path, algorithm: Algorithm) -> Result<Digests, OsImageError> {
    let src = local_path(url).ok_or_else(|| {
        OsImageError::invalid(Step::Download, format!("{url} is not a local file address"))
    })?;
    let part = part.to_path_buf();
    let what = format!("copy {} to {}", src.display(), part.display());
    let task = tokio::task::spawn_blocking(move || {
        let mut hasher = Hasher::new(algorithm);
        let mut reader = std::io::BufReader::new(std::fs::File::open(&src)?);
        let mut writer = std::fs::File::create(&part)?;
        let mut tee = HashingWriter {
            inner: &mut writer,
            hasher: &mut hasher,
        };
        std::io::copy(&mut reader, &mut tee)?;
        writer.sync_all()?;
        Ok::<_, std::io::Error>(hasher.finish())
    });
    task.await
        .map_err(|e| OsImageError::invalid(Step::Download, format!("copy task: {e}")))?
        .map_err(OsImageError::io(Step::Download, what))
}

struct HashingWriter<'a, W> {
    inner: &'a mut W,
    hasher: &'a mut Hasher,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(
            file_name_of("https://h/images/debian-12-generic-amd64.qcow2?x=1").unwrap(),
            "debian-12-generic-amd64.qcow2"
        );
        assert!(file_name_of("https://h/images/").is_err());
        assert!(file_name_of("not a url").is_err());
    }
}
