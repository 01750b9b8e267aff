//! Floating IPs reach their servers: after a change to floating IPs or ports, the driver is told
//! each server's floating addresses, and forwards the server's ports on them too (it skips the
//! servers whose addresses did not change).

use super::resources::s;
use crate::sandbox::Shared;
use crate::sandbox::store::{Server, State as Data};

/// The floating IP addresses pointed at a server's ports.
pub fn floating_addresses(d: &Data, server: &Server) -> Vec<String> {
    server
        .ports
        .iter()
        .flat_map(|(port, _)| {
            d.net("floatingips")
                .filter(move |f| s(f, "port_id") == Some(port.as_str()))
                .filter_map(|f| s(f, "floating_ip_address").map(str::to_string))
        })
        .collect()
}

/// One sync at a time, so that an older view of Neutron never lands after a newer one.
static SYNC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn sync_floating_ips(ctx: &Shared) {
    let _one = SYNC.lock().await;
    let wanted: Vec<(String, Vec<String>)> = ctx.store.read(|d| {
        d.servers
            .values()
            .map(|server| (server.id.clone(), floating_addresses(d, server)))
            .collect()
    });
    for (id, addrs) in wanted {
        if let Err(e) = ctx.driver.set_floating_ips(id.clone(), addrs).await {
            tracing::warn!(server = %id, "floating IPs: {e}");
        }
    }
}
