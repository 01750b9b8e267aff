//! SSH readiness of a builder: TCP, then the SSH banner, then an authenticated command; and the
//! builder's host key, pinned into the build's own known_hosts (never the operator's).
//!
//! The host key comes from the fingerprints cloud-init prints on the serial console when the
//! console has them (trust rooted in the cloud's API), otherwise from the first connection
//! (trust on first use), written to the build's known_hosts either way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::Command;

#[derive(Clone, Debug)]
pub struct SshTarget {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub private_key: PathBuf,
    pub known_hosts: PathBuf,
}

/// How far the builder got, reported while waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Tcp,
    Banner,
    Authenticated,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Tcp => "port 22 open, waiting for the SSH banner",
            Stage::Banner => "SSH answers, waiting for the login to work",
            Stage::Authenticated => "logged in",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "SSH on {address}:{port} was not ready after {}s (last stage reached: {stage}); \
         check the server's console log, its security group and the ssh_user",
        waited.as_secs()
    )]
    Timeout {
        address: String,
        port: u16,
        waited: Duration,
        stage: &'static str,
    },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
}

const HOST_KEYS_BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
const HOST_KEYS_END: &str = "-----END SSH HOST KEY KEYS-----";
const KEY_TYPES: [&str; 4] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ssh-rsa",
    "ecdsa-sha2-nistp384",
];

/// The address this machine sends from to reach `address`, as a single-host CIDR: what the
/// builder's security group lets in. Asks the kernel's routing table (a UDP socket "connected"
/// sends nothing).
pub fn source_cidr(address: &str) -> Result<String, String> {
    let ip: std::net::IpAddr = address
        .parse()
        .map_err(|_| format!("the builder's address {address:?} is not an IP address"))?;
    let local: std::net::SocketAddr = if ip.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(local)
        .and_then(|s| s.connect((ip, 22)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map_err(|e| format!("no route from this machine to the builder at {address}: {e}"))?;
    Ok(match socket.ip() {
        std::net::IpAddr::V4(v4) => format!("{v4}/32"),
        std::net::IpAddr::V6(v6) => format!("{v6}/128"),
    })
}

/// Host public keys from cloud-init's console block, as `type base64` pairs.
pub fn host_keys_from_console(console: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut inside = false;
    for line in console.lines() {
        if line.contains(HOST_KEYS_BEGIN) {
            inside = true;
            keys.clear(); // the latest block wins (a reboot prints it again)
            continue;
        }
        if line.contains(HOST_KEYS_END) {
            inside = false;
            continue;
        }
        if !inside {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| KEY_TYPES.contains(w))
            && let Some(key) = words.get(i + 1)
        {
            keys.push(format!("{} {key}", words[i]));
        }
    }
    keys
}

/// Checks the host keys SSH trusted (the build's known_hosts) against those cloud-init printed
/// on the console: for every key type the console shows, the trusted key must be the console's.
/// Key types the console does not show are not judged.
pub fn check_host_keys(known_hosts: &Path, console_keys: &[String]) -> Result<usize, String> {
    let text = std::fs::read_to_string(known_hosts)
        .map_err(|e| format!("cannot read {}: {e}", known_hosts.display()))?;
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace().skip(1);
        let (Some(kind), Some(key)) = (words.next(), words.next()) else {
            continue;
        };
        let same_kind: Vec<&String> = console_keys
            .iter()
            .filter(|c| c.split_whitespace().next() == Some(kind))
            .collect();
        if same_kind.is_empty() {
            continue;
        }
        let trusted = format!("{kind} {key}");
        if !same_kind.iter().any(|c| **c == trusted) {
            return Err(format!(
                "host key mismatch: the builder presented {kind} {}… but its console shows {}: \
                 something else answered on its address",
                key.chars().take(16).collect::<String>(),
                same_kind
                    .iter()
                    .map(|c| format!("{}…", c.chars().take(kind.len() + 17).collect::<String>()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        checked += 1;
    }
    Ok(checked)
}

fn known_hosts_name(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

/// Writes the build's known_hosts with these keys for the builder (mode 0600).
pub fn pin_host_keys(
    path: &Path,
    address: &str,
    port: u16,
    keys: &[String],
) -> Result<(), SshError> {
    let host = known_hosts_name(address, port);
    let text: String = keys.iter().map(|k| format!("{host} {k}\n")).collect();
    std::fs::write(path, text).map_err(|source| SshError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Trust on first use: records whatever key the builder shows now.
pub async fn trust_first_use(target: &SshTarget) -> Result<usize, SshError> {
    let out = Command::new("ssh-keyscan")
        .args(["-T", "10", "-p", &target.port.to_string(), &target.address])
        .output()
        .await
        .map_err(|source| SshError::Spawn {
            program: "ssh-keyscan",
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let keys: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(1);
            Some(format!("{} {}", w.next()?, w.next()?))
        })
        .collect();
    if !keys.is_empty() {
        pin_host_keys(&target.known_hosts, &target.address, target.port, &keys)?;
    }
    Ok(keys.len())
}

async fn banner(address: &str, port: u16) -> Option<String> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((address, port)))
            .await
            .ok()?
            .ok()?;
    let mut buf = [0u8; 256];
    // sshd greets at once; a forward (QEMU's, a NAT) may hold a connection that no server
    // took: give up soon and try a fresh one.
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.starts_with("SSH-").then(|| text.trim().to_string())
}

async fn tcp_open(address: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((address, port))).await,
        Ok(Ok(_))
    )
}

/// `ssh … true` with the build's key and known_hosts.
pub async fn authenticated(target: &SshTarget) -> Result<bool, SshError> {
    let status = ssh_command(target)
        .arg("true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(|source| SshError::Spawn {
            program: "ssh",
            source,
        })?;
    Ok(status.success())
}

/// An `ssh` command to the builder with the build's identity, ready for arguments.
pub fn ssh_command(target: &SshTarget) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-i")
        .arg(&target.private_key)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            target.known_hosts.display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg("-p")
        .arg(target.port.to_string())
        .arg(format!("{}@{}", target.user, target.address));
    cmd
}

/// The command line an operator can paste to reach the builder (keep-on-error).
pub fn ssh_command_line(target: &SshTarget) -> String {
    format!(
        "ssh -i {} -o UserKnownHostsFile={} -p {} {}@{}",
        target.private_key.display(),
        target.known_hosts.display(),
        target.port,
        target.user,
        target.address
    )
}

/// Waits until TCP, banner and an authenticated command all work, or `timeout` passes. Without a
/// pinned key in the build's known_hosts by then, the first key seen is trusted.
pub async fn wait_ready(
    target: &SshTarget,
    timeout: Duration,
    mut on_stage: impl FnMut(Stage),
) -> Result<(), SshError> {
    let start = Instant::now();
    let mut reached: Option<Stage> = None;
    let mut delay = Duration::from_millis(500);
    loop {
        let stage = if !tcp_open(&target.address, target.port).await {
            None
        } else if banner(&target.address, target.port).await.is_none() {
            Some(Stage::Tcp)
        } else {
            if !target.known_hosts.is_file() {
                trust_first_use(target).await?;
            }
            if authenticated(target).await? {
                Some(Stage::Authenticated)
            } else {
                Some(Stage::Banner)
            }
        };
        if stage != reached {
            if let Some(s) = stage {
                on_stage(s);
            }
            reached = stage;
        }
        if stage == Some(Stage::Authenticated) {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(SshError::Timeout {
                address: target.address.clone(),
                port: target.port,
                waited: start.elapsed(),
                stage: match reached {
                    None => "nothing listens",
                    Some(Stage::Tcp) => "port open, no SSH banner",
                    Some(Stage::Banner) => "SSH answers, login refused",
                    Some(Stage::Authenticated) => "logged in",
                },
            });
        }
        // Probes are cheap, and every second here is a second of every build.
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_keys_are_checked_against_the_console() {
        let dir = tempfile::tempdir().unwrap();
        let known = dir.path().join("known_hosts");
        std::fs::write(
            &known,
            "127.0.0.1 ssh-ed25519 AAAAgood\n127.0.0.1 ssh-rsa AAAArsa\n",
        )
        .unwrap();
        let console = ["ssh-ed25519 AAAAgood".to_string()];
        assert_eq!(check_host_keys(&known, &console), Ok(1));
        assert_eq!(check_host_keys(&known, &[]), Ok(0));
        let other = ["ssh-ed25519 AAAAevil".to_string()];
        let err = check_host_keys(&known, &other).unwrap_err();
        assert!(
            err.starts_with("host key mismatch: the builder presented ssh-ed25519 AAAAgood"),
            "{err}"
        );
    }

    #[test]
    fn the_source_address_towards_a_builder_is_a_single_host() {
        assert_eq!(source_cidr("127.0.0.1").unwrap(), "127.0.0.1/32");
        assert!(source_cidr("::1").unwrap().ends_with("/128"));
        assert!(
            source_cidr("builder")
                .unwrap_err()
                .contains("not an IP address")
        );
    }

    #[test]
    fn host_keys_come_from_cloud_inits_console_block() {
        let console = "\
[   12.1] cloud-init[512]: Generating public/private ed25519 key pair.
<14>Nov 25 09:05:01 cloud-init: #############################################################
<14>Nov 25 09:05:01 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----
<14>Nov 25 09:05:01 cloud-init: 256 SHA256:abc root@builder (ED25519)
<14>Nov 25 09:05:01 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNh root@builder
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 root@builder
-----END SSH HOST KEY KEYS-----
";
        assert_eq!(
            host_keys_from_console(console),
            [
                "ecdsa-sha2-nistp256 AAAAE2VjZHNh",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"
            ]
        );
        assert!(host_keys_from_console("no keys here").is_empty());
    }

    #[test]
    fn pinned_keys_name_the_port_when_not_22() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        pin_host_keys(&path, "127.0.0.1", 2222, &["ssh-ed25519 AAAA".into()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[127.0.0.1]:2222 ssh-ed25519 AAAA\n"
        );
        pin_host_keys(&path, "127.42.0.5", 22, &["ssh-ed25519 AAAA".into()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "127.42.0.5 ssh-ed25519 AAAA\n"
        );
    }

    #[tokio::test]
    async fn waiting_reports_how_far_a_silent_or_fake_server_got() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and stays silent: the port is open but no SSH speaks.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let target = SshTarget {
            address: "127.0.0.1".into(),
            port,
            user: "debian".into(),
            private_key: dir.path().join("id"),
            known_hosts: dir.path().join("known_hosts"),
        };
        let mut stages = Vec::new();
        let err = wait_ready(&target, Duration::from_millis(100), |s| stages.push(s))
            .await
            .unwrap_err();
        assert_eq!(stages, [Stage::Tcp]);
        assert!(
            err.to_string().contains("port open, no SSH banner"),
            "{err}"
        );

        let closed = SshTarget { port: 1, ..target };
        let err = wait_ready(&closed, Duration::from_millis(10), |_| {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nothing listens"), "{err}");
    }
}
