//! Each machine's SSH forward: QEMU user-mode networking forwards `<address>:<port>` on the host to
//! the guest's port 22, so the sandbox needs no bridge, tap device or root for networking.
//!
//! Each machine gets its own loopback address, `127.42.H.L` by default, with port 22, so that
//! `ssh 127.42.0.2` works like a floating IP. On Linux all of 127.0.0.0/8 is routed to `lo`, and
//! binding any of those addresses needs no privilege (checked here as `nobody`: 127.42.0.5:2222
//! binds). Port 22 does: it is below `net.ipv4.ip_unprivileged_port_start` (1024 by default), so it
//! needs root or CAP_NET_BIND_SERVICE. The allocator does not guess from the uid: it tries to bind
//! `<address>:22`, and if that is refused (EACCES) it falls back to `127.0.0.1:<free port>` and
//! says so in [`SshEndpoint::note`]. Free-port picking races with other programs; a launch whose
//! forward cannot be bound is retried with a new endpoint.
//!
//! A machine whose spec names its own address (`bind_addr`, a sandbox server's fixed IP) forwards
//! each of its ports there instead ([`forwards_on`]), each port falling back on its own; extra
//! addresses (floating IPs) forward the same ports, added and removed live (see
//! [`crate::vm::forward`]).

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener};

use serde::{Deserialize, Serialize};

/// Where the guest's SSH port is reachable from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshEndpoint {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// Why this is not `<own address>:22`, when it is not.
    pub note: Option<String>,
}

impl std::fmt::Display for SshEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

/// How many addresses to try when port 22 is busy on them before giving up on port 22.
const MAX_TRIES: usize = 64;

/// Picks an endpoint: `preferred` again if it can still be bound (so a restarted machine keeps
/// its address), else the first `127.<prefix>.H.L` (L in 2..=254) not in `taken` where port 22
/// binds, else `127.0.0.1:<free port>`.
pub fn allocate(
    prefix: [u8; 2],
    taken: &HashSet<Ipv4Addr>,
    preferred: Option<&SshEndpoint>,
) -> std::io::Result<SshEndpoint> {
    if let Some(p) = preferred
        && can_bind(p.addr, p.port).is_ok()
    {
        return Ok(p.clone());
    }
    let mut tries = 0;
    for hi in 0..=255u8 {
        for lo in 2..=254u8 {
            let addr = Ipv4Addr::new(127, prefix[0], prefix[1].wrapping_add(hi), lo);
            if taken.contains(&addr) {
                continue;
            }
            match can_bind(addr, 22) {
                Ok(()) => {
                    return Ok(SshEndpoint {
                        addr,
                        port: 22,
                        note: None,
                    });
                }
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    return fallback(
                        "binding port 22 needs root or CAP_NET_BIND_SERVICE".to_string(),
                    );
                }
                Err(e) if e.kind() == ErrorKind::AddrInUse && tries < MAX_TRIES => tries += 1,
                Err(e) => return fallback(format!("port 22 on {addr}: {e}")),
            }
        }
    }
    fallback("no loopback address left with port 22 free".to_string())
}

/// One host-to-guest TCP forward. `addr` is the address it serves (the machine's own, or a
/// floating one); `host_addr:host_port` is where it is bound, which differs when that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub addr: Ipv4Addr,
    pub host_addr: Ipv4Addr,
    pub host_port: u16,
    pub guest_port: u16,
    /// Why this is not `addr:guest_port`, when it is not.
    #[serde(default)]
    pub note: Option<String>,
}

impl Forward {
    /// QEMU's `hostfwd` rule: `tcp:127.42.0.2:22-:22`.
    pub fn rule(&self) -> String {
        format!(
            "tcp:{}:{}-:{}",
            self.host_addr, self.host_port, self.guest_port
        )
    }
}

/// Forwards for `ports` on `addr`, each `addr:port` when it binds, else `127.0.0.1:<free port>`
/// with the reason in its note (port 22, 80 and 443 need root or CAP_NET_BIND_SERVICE; the address
/// may be busy, or not local at all when it is not a loopback one).
pub fn forwards_on(addr: Ipv4Addr, ports: &[u16]) -> std::io::Result<Vec<Forward>> {
    ports
        .iter()
        .map(|&port| match can_bind(addr, port) {
            Ok(()) => Ok(Forward {
                addr,
                host_addr: addr,
                host_port: port,
                guest_port: port,
                note: None,
            }),
            Err(e) => {
                let why = match e.kind() {
                    ErrorKind::PermissionDenied => {
                        format!("binding {addr}:{port} needs root or CAP_NET_BIND_SERVICE")
                    }
                    _ => format!("{addr}:{port}: {e}"),
                };
                let fb = fallback(why)?;
                Ok(Forward {
                    addr,
                    host_addr: fb.addr,
                    host_port: fb.port,
                    guest_port: port,
                    note: fb.note,
                })
            }
        })
        .collect()
}

fn fallback(why: String) -> std::io::Result<SshEndpoint> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    Ok(SshEndpoint {
        addr: Ipv4Addr::LOCALHOST,
        port,
        note: Some(format!("{why}: using 127.0.0.1:{port}")),
    })
}

fn can_bind(addr: Ipv4Addr, port: u16) -> std::io::Result<()> {
    TcpListener::bind((addr, port)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_distinct_addresses_and_reuses_the_preferred_one() {
        let mut taken = HashSet::new();
        // Use an unusual prefix so concurrent sandboxes on this host do not interfere.
        let a = allocate([42, 200], &taken, None).unwrap();
        taken.insert(a.addr);
        let b = allocate([42, 200], &taken, None).unwrap();
        if a.port == 22 {
            assert!(a.note.is_none() && a.addr.octets()[..2] == [127, 42]);
            assert_ne!(a.addr, b.addr);
        } else {
            // Not privileged (checked by running this test as nobody): every machine shares
            // 127.0.0.1 with a port of its own.
            assert_eq!((a.addr, b.addr), (Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST));
            assert!(
                a.note
                    .as_deref()
                    .unwrap_or("")
                    .contains("CAP_NET_BIND_SERVICE")
            );
        }
        assert_eq!(allocate([42, 200], &taken, Some(&a)).unwrap(), a);
    }

    #[test]
    fn forwards_fall_back_per_port() {
        let addr = Ipv4Addr::new(127, 42, 202, 7);
        let busy = TcpListener::bind((addr, 0)).unwrap();
        let taken = busy.local_addr().unwrap().port();
        let free = TcpListener::bind((addr, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let got = forwards_on(addr, &[free, taken]).unwrap();
        assert_eq!(
            (got[0].host_addr, got[0].host_port, got[0].note.clone()),
            (addr, free, None)
        );
        assert_eq!(
            (got[1].host_addr, got[1].guest_port),
            (Ipv4Addr::LOCALHOST, taken)
        );
        assert!(
            got[1].note.as_deref().unwrap_or("").contains("127.0.0.1:"),
            "{got:?}"
        );
        assert_eq!(got[0].rule(), format!("tcp:{addr}:{free}-:{free}"));
        // Not a local address at all.
        let far = forwards_on(Ipv4Addr::new(10, 200, 0, 5), &[2222]).unwrap();
        assert_eq!(far[0].host_addr, Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn a_busy_preferred_endpoint_is_replaced() {
        let busy = TcpListener::bind((Ipv4Addr::new(127, 42, 201, 9), 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        let preferred = SshEndpoint {
            addr: Ipv4Addr::new(127, 42, 201, 9),
            port,
            note: None,
        };
        let got = allocate([42, 201], &HashSet::new(), Some(&preferred)).unwrap();
        assert_ne!(got, preferred);
    }
}
