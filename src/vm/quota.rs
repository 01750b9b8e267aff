//! How much of the host the sandbox's machines may take, from `/proc/meminfo`.
//!
//! The memory quota is fixed when the [`crate::vm::VmHost`] opens: MemAvailable then, minus a
//! reserve for the host (the sandbox, the factory, the build tools), plus what machines adopted at
//! that moment already use. A guest's RAM is only touched as it is used, so this is conservative;
//! each machine is also charged a QEMU overhead (device emulation, TCG's translation cache).

use serde::{Deserialize, Serialize};

/// The numbers the sandbox shows as its Nova quota and enforces at launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// MiB of guest RAM (plus overhead) all machines together may have.
    pub ram_mib: u64,
    /// MiB currently charged to running machines.
    pub ram_used_mib: u64,
    /// Concurrent machines of `reference_memory_mib` that fit in `ram_mib`: the instance quota.
    pub instances: u64,
    /// The machine size `instances` is computed for.
    pub reference_memory_mib: u64,
    /// Charged per machine on top of its RAM.
    pub overhead_mib: u64,
}

impl Quota {
    pub fn new(ram_mib: u64, reference_memory_mib: u64, overhead_mib: u64) -> Self {
        Self {
            ram_mib,
            ram_used_mib: 0,
            instances: ram_mib / (reference_memory_mib + overhead_mib).max(1),
            reference_memory_mib,
            overhead_mib,
        }
    }

    /// What a machine with `memory_mib` of RAM is charged.
    pub fn charge(&self, memory_mib: u64) -> u64 {
        memory_mib + self.overhead_mib
    }
}

/// MemAvailable in MiB, from `/proc/meminfo`.
pub fn mem_available_mib() -> std::io::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    parse_mem_available_mib(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no MemAvailable line in /proc/meminfo",
        )
    })
}

fn parse_mem_available_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo_and_counts_instances() {
        let text = "MemTotal:       24683520 kB\nMemFree:        19427000 kB\nMemAvailable:   24194048 kB\n";
        assert_eq!(parse_mem_available_mib(text), Some(23627));
        assert_eq!(parse_mem_available_mib("MemTotal: 1 kB\n"), None);
        let q = Quota::new(23627 - 2048, 1024, 256);
        assert_eq!(q.instances, 16);
        assert_eq!(q.charge(512), 768);
        assert!(mem_available_mib().unwrap() > 0);
    }
}
