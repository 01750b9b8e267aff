//! Digests computed while bytes stream by, and the lines of SHA*SUMS files.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

/// A digest the image must have, as the definition or its SUMS file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expected {
    pub algorithm: Algorithm,
    pub hex: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
}

/// Always a sha256 (what the engine records and Glance can compare), plus sha512 when expected.
pub(crate) struct Hasher {
    sha256: Sha256,
    sha512: Option<Sha512>,
}

pub(crate) struct Digests {
    pub sha256: String,
    pub sha512: Option<String>,
}

impl Digests {
    pub fn get(&self, algorithm: Algorithm) -> &str {
        match algorithm {
            Algorithm::Sha256 => &self.sha256,
            Algorithm::Sha512 => self.sha512.as_deref().unwrap_or_default(),
        }
    }
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        Hasher {
            sha256: Sha256::new(),
            sha512: (algorithm == Algorithm::Sha512).then(Sha512::new),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(h) = &mut self.sha512 {
            h.update(bytes);
        }
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: hex::encode(self.sha256.finalize()),
            sha512: self.sha512.map(|h| hex::encode(h.finalize())),
        }
    }
}

/// Hashes a whole file into `hasher`, returning its length. Blocking: callers run it on tokio's
/// blocking pool. `tick` sees the running count every 64 MiB.
pub(crate) fn hash_file(
    path: &Path,
    hasher: &mut Hasher,
    mut tick: impl FnMut(u64),
) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut done, mut next_tick) = (0u64, 64u64 << 20);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(done);
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        if done >= next_tick {
            tick(done);
            next_tick += 64 << 20;
        }
    }
}

/// The digest for `file` in a SHA256SUMS/SHA512SUMS text: GNU lines (`<hex>  name`, `<hex> *name`)
/// or BSD lines (`SHA512 (name) = <hex>`). The algorithm follows from the digest's length.
pub(crate) fn find_in_sums(text: &str, file: &str) -> Option<Expected> {
    text.lines().find_map(|line| {
        let line = line.trim();
        let (hex, name) = if let Some((head, hex)) = line.split_once(") = ") {
            let name = head.split_once(" (")?.1;
            (hex.trim(), name)
        } else {
            let (hex, rest) = line.split_once(char::is_whitespace)?;
            (hex, rest.trim_start().trim_start_matches('*'))
        };
        let name = name.strip_prefix("./").unwrap_or(name);
        if name != file || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let algorithm = match hex.len() {
            64 => Algorithm::Sha256,
            128 => Algorithm::Sha512,
            _ => return None,
        };
        Some(Expected {
            algorithm,
            hex: hex.to_ascii_lowercase(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn gnu_and_bsd_lines() {
        let b = "B".repeat(128);
        let text = format!(
            "{A}  debian-12-nocloud-amd64.qcow2\n{A} *debian-12-generic-amd64.raw\n\
             SHA512 (debian-12-generic-amd64.qcow2) = {b}\n"
        );
        let raw = find_in_sums(&text, "debian-12-generic-amd64.raw").unwrap();
        assert_eq!(raw.algorithm, Algorithm::Sha256);
        let qcow = find_in_sums(&text, "debian-12-generic-amd64.qcow2").unwrap();
        assert_eq!(qcow.algorithm, Algorithm::Sha512);
        assert_eq!(qcow.hex, b.to_ascii_lowercase());
        assert_eq!(find_in_sums(&text, "debian-12"), None);
    }

    #[test]
    fn sha512_is_computed_only_when_expected() {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.sha512, None);
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish().sha512.unwrap().starts_with("ddaf35a193617aba"));
    }
}
