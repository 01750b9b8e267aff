//! Which accelerator to use: KVM only where a guest is seen to really run under it, TCG otherwise.
//!
//! `/dev/kvm` is not trusted: on the machines here it exists and answers ioctls, a boot sector even
//! runs under it (3.7 s instead of TCG's 0.4 s), yet a Linux kernel hangs without printing a line. So
//! the probe boots a Linux kernel (the host's newest `/boot/vmlinuz-*`, or one configured) under KVM
//! with `console=ttyS0` and wants its `Linux version` line on the serial port within the timeout.
//! Without a kernel it boots a generated 512-byte boot sector that prints a marker, and also requires
//! KVM not to be much slower than TCG at it (the symptom seen here). The answer is cached for the process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::OnceCell;

/// The accelerator a machine runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        })
    }
}

/// The probe's verdict, for server metadata and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelProbe {
    pub accel: Accel,
    /// One sentence saying why, e.g. "KVM: Linux 6.1.0-56 printed nothing in 5s; using TCG".
    pub reason: String,
    /// How long the probe took.
    #[serde(with = "crate::serde_millis")]
    pub elapsed: Duration,
}

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub qemu_system: PathBuf,
    /// Kernel to boot under KVM; `None` means the newest `/boot/vmlinuz-*`, if any.
    pub kernel: Option<PathBuf>,
    /// How long a KVM guest gets to show a sign of life (a working KVM needs well under a second).
    pub timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            qemu_system: PathBuf::from("qemu-system-x86_64"),
            kernel: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Environment variable that skips the probe: `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "FACTORY_VM_ACCEL";

static CACHED: OnceCell<AccelProbe> = OnceCell::const_new();

/// The process-wide answer: probed once (with the first caller's config), or forced by
/// `FACTORY_VM_ACCEL=kvm|tcg`.
pub async fn accelerator(config: &ProbeConfig) -> &'static AccelProbe {
    CACHED
        .get_or_init(|| async {
            match std::env::var(ACCEL_ENV).as_deref() {
                Ok("kvm") => forced(Accel::Kvm),
                Ok("tcg") => forced(Accel::Tcg),
                _ => probe(config).await,
            }
        })
        .await
}

fn forced(accel: Accel) -> AccelProbe {
    AccelProbe {
        accel,
        reason: format!("{accel} forced by {ACCEL_ENV}"),
        elapsed: Duration::ZERO,
    }
}

/// Probes now, uncached. Never fails: anything wrong with KVM means TCG, with the reason.
pub async fn probe(config: &ProbeConfig) -> AccelProbe {
    let start = Instant::now();
    let (accel, reason) = decide(config).await;
    AccelProbe {
        accel,
        reason,
        elapsed: start.elapsed(),
    }
}

async fn decide(config: &ProbeConfig) -> (Accel, String) {
    let tcg = |why: String| (Accel::Tcg, format!("{why}; using TCG"));
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return tcg(format!("cannot open /dev/kvm ({e})"));
    }
    let kernel = config.kernel.clone().or_else(newest_host_kernel);
    if let Some(kernel) = kernel {
        let args = kernel_args(&kernel);
        return match boot(
            &config.qemu_system,
            Accel::Kvm,
            &args,
            b"Linux version ",
            config.timeout,
        )
        .await
        {
            Ok(t) => (
                Accel::Kvm,
                format!("KVM booted {} to its first line in {t:?}", kernel.display()),
            ),
            Err(why) => tcg(format!("KVM: {} {why}", kernel.display())),
        };
    }
    // No kernel to try: the boot sector, timed against TCG.
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return tcg(format!("cannot make a temp dir for the boot sector ({e})")),
    };
    let image = dir.path().join("probe.img");
    if let Err(e) = std::fs::write(&image, boot_sector()) {
        return tcg(format!("cannot write the boot sector ({e})"));
    }
    let args = sector_args(&image);
    let kvm = match boot(
        &config.qemu_system,
        Accel::Kvm,
        &args,
        MARKER,
        config.timeout,
    )
    .await
    {
        Ok(t) => t,
        Err(why) => return tcg(format!("KVM: boot sector {why}")),
    };
    match boot(
        &config.qemu_system,
        Accel::Tcg,
        &args,
        MARKER,
        config.timeout,
    )
    .await
    {
        // Seen here: KVM 3.7 s vs TCG 0.4 s on a host where KVM kernels hang.
        Ok(t) if kvm > t * 3 && kvm > Duration::from_millis(1500) => tcg(format!(
            "no kernel to test KVM with, and KVM ran a boot sector in {kvm:?} against TCG's {t:?}"
        )),
        _ => (
            Accel::Kvm,
            format!("KVM ran a boot sector in {kvm:?} (no Linux kernel found to test further)"),
        ),
    }
}

/// The newest `/boot/vmlinuz-*` by name (Debian's names sort by version closely enough).
pub fn newest_host_kernel() -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .filter(|p| std::fs::File::open(p).is_ok())
        .collect();
    kernels.sort();
    kernels.pop()
}

const MARKER: &[u8] = b"FACTORY-PROBE-OK";

/// A real-mode boot sector that writes `FACTORY-PROBE-OK\r\n` to COM1 (port 0x3f8) and halts.
pub fn boot_sector() -> Vec<u8> {
    #[rustfmt::skip]
    let code: [u8; 23] = [
        0x31, 0xC0,       // xor ax, ax
        0x8E, 0xD8,       // mov ds, ax
        0xBE, 0x17, 0x7C, // mov si, 0x7c17 (the message, right after this code)
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8
        0xFC,             // cld
        0xAC,             // next: lodsb
        0x84, 0xC0,       // test al, al
        0x74, 0x03,       // jz done
        0xEE,             // out dx, al
        0xEB, 0xF8,       // jmp next
        0xFA,             // done: cli
        0xF4,             // hlt
        0xEB, 0xFC,       // jmp done
    ];
    let mut sector = code.to_vec();
    sector.extend_from_slice(MARKER);
    sector.extend_from_slice(b"\r\n\0");
    sector.resize(510, 0);
    sector.extend_from_slice(&[0x55, 0xAA]);
    sector
}

fn kernel_args(kernel: &Path) -> Vec<String> {
    vec![
        "-m".into(),
        "256".into(),
        "-kernel".into(),
        kernel.display().to_string(),
        "-append".into(),
        "console=ttyS0 panic=-1".into(),
    ]
}

fn sector_args(image: &Path) -> Vec<String> {
    vec![
        "-m".into(),
        "16".into(),
        "-drive".into(),
        format!(
            "file={},format=raw,if=ide",
            image.display().to_string().replace(',', ",,")
        ),
    ]
}

/// Boots QEMU with the serial port on stdout and waits for `marker`; returns the time it took, or
/// why not (with QEMU's stderr when it exited).
async fn boot(
    qemu: &Path,
    accel: Accel,
    args: &[String],
    marker: &[u8],
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", accel.qemu_name()])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
        ])
        .args(["-no-reboot"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if accel == Accel::Kvm {
        cmd.args(["-cpu", "host"]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", qemu.display()))?;
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("no pipes to QEMU".into());
    };
    let seen = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match out.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(marker.len()).any(|w| w == marker) {
                return true;
            }
        }
    };
    let result = match tokio::time::timeout(timeout, seen).await {
        Ok(true) => Ok(start.elapsed()),
        Ok(false) => {
            let mut stderr = String::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(1), err.read_to_string(&mut stderr)).await;
            Err(format!(
                "QEMU exited before printing anything: {}",
                stderr.trim()
            ))
        }
        Err(_) => Err(format!("printed nothing in {timeout:?}")),
    };
    let _ = child.kill().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_is_bootable_and_points_at_its_message() {
        let s = boot_sector();
        assert_eq!(s.len(), 512);
        assert_eq!(&s[510..], &[0x55, 0xAA]);
        // `mov si, imm16` loads 0x7c00 + the message's offset.
        let si = usize::from(u16::from_le_bytes([s[5], s[6]])) - 0x7c00;
        assert_eq!(&s[si..si + MARKER.len()], MARKER);
    }

    #[test]
    fn probe_result_serializes_for_metadata() {
        let p = AccelProbe {
            accel: Accel::Tcg,
            reason: "x".into(),
            elapsed: Duration::from_millis(1500),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"accel": "tcg", "reason": "x", "elapsed": 1500})
        );
    }
}
