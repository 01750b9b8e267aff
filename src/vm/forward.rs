//! A machine's port forwards: planned at each start (its own address, or an allocated one, plus
//! any extra addresses), and changed live for floating IPs through QMP's `human-monitor-command`
//! (`hostfwd_add`/`hostfwd_remove` on the user-mode netdev: QMP has no native command for them).

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::vm::cmdline::NETDEV;
use crate::vm::error::{Ctx, Result};
use crate::vm::host::Shared;
use crate::vm::machine::Machine;
use crate::vm::net::{self, Forward, SshEndpoint};

impl Machine {
    /// Every forward in place (or planned, when stopped) with where it is bound.
    pub fn forwards(&self) -> Vec<Forward> {
        self.record().forwards
    }

    /// The address the machine's own forwards serve.
    fn primary_addr(&self) -> Ipv4Addr {
        let rec = self.record();
        rec.spec.bind_addr.unwrap_or(rec.ssh.addr)
    }

    /// Where the forwards go for the coming start: the spec's `bind_addr` (each port falling back
    /// to 127.0.0.1 on its own when refused), or an allocated SSH endpoint; then the extra
    /// addresses, with the same ports.
    pub(crate) fn plan_forwards(
        &self,
        host: &Shared,
        attempt: u32,
    ) -> Result<(SshEndpoint, Vec<Forward>)> {
        let op = "start";
        let rec = self.record();
        let ports = rec.spec.ports();
        let (addr, mut forwards) = match rec.spec.bind_addr {
            Some(addr) => (addr, net::forwards_on(addr, &ports).ctx(self.id(), op)?),
            None => {
                let preferred = (attempt == 1)
                    .then(|| rec.ssh.clone())
                    .filter(|s| s.port != 0);
                let taken = host.taken_addresses(self.id());
                let ssh = net::allocate(host.config.loopback_prefix, &taken, preferred.as_ref())
                    .ctx(self.id(), op)?;
                let own = Forward {
                    addr: ssh.addr,
                    host_addr: ssh.addr,
                    host_port: ssh.port,
                    guest_port: 22,
                    note: ssh.note.clone(),
                };
                (ssh.addr, vec![own])
            }
        };
        for extra in &rec.extra_addrs {
            forwards.extend(net::forwards_on(*extra, &ports).ctx(self.id(), op)?);
        }
        let ssh = forwards
            .iter()
            .find(|f| f.addr == addr && f.guest_port == 22)
            .or(forwards.first())
            .map(|f| SshEndpoint {
                addr: f.host_addr,
                port: f.host_port,
                note: f.note.clone(),
            })
            .unwrap_or_else(|| rec.ssh.clone());
        Ok((ssh, forwards))
    }

    /// Makes `addrs` (floating IPs) forward the machine's ports too, and no other extra address:
    /// live when it runs, from the next start otherwise. Returns the forwards in place.
    pub async fn set_extra_addrs(&self, addrs: &[Ipv4Addr]) -> Result<Vec<Forward>> {
        let op = "floating addresses";
        let _ops = self.lock_ops().await;
        let primary = self.primary_addr();
        let mut wanted: Vec<Ipv4Addr> = Vec::new();
        for a in addrs {
            if *a != primary && !wanted.contains(a) {
                wanted.push(*a);
            }
        }
        let rec = self.record();
        if wanted == rec.extra_addrs {
            return Ok(rec.forwards);
        }
        let running = self.live_pid().is_some();
        let mut forwards = rec.forwards.clone();
        let result = async {
            let gone: Vec<Forward> = forwards
                .iter()
                .filter(|f| f.addr != primary && !wanted.contains(&f.addr))
                .cloned()
                .collect();
            for f in gone {
                if running {
                    let rule = format!("tcp:{}:{}", f.host_addr, f.host_port);
                    let out = self
                        .hmp(op, &format!("hostfwd_remove {NETDEV} {rule}"))
                        .await?;
                    if !(out.contains("removed") || out.contains("not found")) {
                        return Err(self.err(op, std::io::Error::other(out.trim().to_string())));
                    }
                }
                forwards.retain(|x| x != &f);
            }
            if !running {
                // The start plans them, with fresh binding checks.
                return Ok(());
            }
            let ports = rec.spec.ports();
            let new: Vec<Ipv4Addr> = wanted
                .iter()
                .copied()
                .filter(|a| !forwards.iter().any(|f| f.addr == *a))
                .collect();
            for addr in new {
                for f in net::forwards_on(addr, &ports).ctx(self.id(), op)? {
                    let out = self
                        .hmp(op, &format!("hostfwd_add {NETDEV} {}", f.rule()))
                        .await?;
                    if !out.trim().is_empty() {
                        return Err(self.err(op, std::io::Error::other(out.trim().to_string())));
                    }
                    forwards.push(f);
                }
            }
            Ok(())
        }
        .await;
        // What was done is recorded even when a later step failed.
        let extra = if result.is_ok() {
            wanted
        } else {
            let mut kept: Vec<Ipv4Addr> = forwards
                .iter()
                .map(|f| f.addr)
                .filter(|a| *a != primary)
                .collect();
            kept.dedup();
            kept
        };
        self.update_record(|r| {
            r.extra_addrs = extra;
            r.forwards = forwards.clone();
        });
        self.save_record(op)?;
        result.map(|()| forwards)
    }

    /// One human-monitor command; its output (empty on success for most commands).
    async fn hmp(&self, op: &str, command: &str) -> Result<String> {
        let v = self
            .execute(
                op,
                "human-monitor-command",
                Some(json!({ "command-line": command })),
            )
            .await?;
        Ok(v.as_str().map(str::to_string).unwrap_or_else(|| match v {
            Value::Null => String::new(),
            other => other.to_string(),
        }))
    }
}
