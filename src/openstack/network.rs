//! Networking (Neutron v2.0): networks, subnets, security groups and their rules, floating
//! IPs, ports.

use serde::Deserialize;
use serde_json::{Value, json};

use super::client::Cloud;
use super::compute::one;
use super::error::{ApiError, Service};
use super::paging::{Paging, seg};
use super::request::Req;

const N: Service = Service::Network;

#[derive(Clone, Debug, Deserialize)]
pub struct Network {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: Option<String>,
    /// True for a network floating IPs come from.
    #[serde(rename = "router:external", default)]
    pub external: bool,
    #[serde(default)]
    pub shared: bool,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub project_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Subnet {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub network_id: String,
    pub cidr: String,
    pub ip_version: u8,
    #[serde(default)]
    pub gateway_ip: Option<String>,
    #[serde(default)]
    pub enable_dhcp: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub security_group_rules: Vec<SecurityGroupRule>,
    #[serde(default)]
    pub project_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SecurityGroupRule {
    pub id: String,
    pub security_group_id: String,
    /// ingress or egress.
    pub direction: String,
    /// IPv4 or IPv6.
    #[serde(default)]
    pub ethertype: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub port_range_min: Option<u16>,
    #[serde(default)]
    pub port_range_max: Option<u16>,
    #[serde(default)]
    pub remote_ip_prefix: Option<String>,
    #[serde(default)]
    pub remote_group_id: Option<String>,
}

/// A rule to add to a security group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRule {
    pub security_group_id: String,
    pub direction: String,
    pub ethertype: String,
    pub protocol: Option<String>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<String>,
}

impl NewRule {
    /// Inbound TCP to `port` from `cidr` (IPv4 or IPv6, from the CIDR's form).
    pub fn ingress_tcp(security_group_id: &str, port: u16, cidr: &str) -> NewRule {
        NewRule {
            security_group_id: security_group_id.to_string(),
            direction: "ingress".into(),
            ethertype: if cidr.contains(':') { "IPv6" } else { "IPv4" }.into(),
            protocol: Some("tcp".into()),
            port_range_min: Some(port),
            port_range_max: Some(port),
            remote_ip_prefix: Some(cidr.to_string()),
        }
    }

    fn body(&self) -> Value {
        let mut rule = json!({
            "security_group_id": self.security_group_id,
            "direction": self.direction,
            "ethertype": self.ethertype,
        });
        let fields = [
            ("protocol", self.protocol.as_ref().map(|v| json!(v))),
            ("port_range_min", self.port_range_min.map(|v| json!(v))),
            ("port_range_max", self.port_range_max.map(|v| json!(v))),
            (
                "remote_ip_prefix",
                self.remote_ip_prefix.as_ref().map(|v| json!(v)),
            ),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                rule[key] = value;
            }
        }
        json!({ "security_group_rule": rule })
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct FloatingIp {
    pub id: String,
    pub floating_ip_address: String,
    pub floating_network_id: String,
    #[serde(default)]
    pub port_id: Option<String>,
    #[serde(default)]
    pub fixed_ip_address: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Port {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub network_id: String,
    #[serde(default)]
    pub device_id: String,
    #[serde(default)]
    pub device_owner: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip_address: String,
}

const NETWORKS: Paging = Paging::Links("networks_links");

impl Cloud {
    /// Networks, all or those with this exact name.
    pub async fn list_networks(&self, name: Option<&str>) -> Result<Vec<Network>, ApiError> {
        let req = Req::get(N, "/networks").query_opt("name", name);
        self.list(req, "networks", NETWORKS).await
    }

    pub async fn get_network(&self, id: &str) -> Result<Network, ApiError> {
        self.json_key(Req::get(N, format!("/networks/{}", seg(id))), "network")
            .await
    }

    /// A network by id, else by name.
    pub async fn find_network(&self, name_or_id: &str) -> Result<Network, ApiError> {
        match self.get_network(name_or_id).await {
            Err(e) if e.is_not_found() => {}
            other => return other,
        }
        one(
            "network",
            name_or_id,
            self.list_networks(Some(name_or_id)).await?,
        )
    }

    pub async fn list_subnets(&self, network_id: Option<&str>) -> Result<Vec<Subnet>, ApiError> {
        let req = Req::get(N, "/subnets").query_opt("network_id", network_id);
        self.list(req, "subnets", Paging::Links("subnets_links"))
            .await
    }

    pub async fn get_subnet(&self, id: &str) -> Result<Subnet, ApiError> {
        self.json_key(Req::get(N, format!("/subnets/{}", seg(id))), "subnet")
            .await
    }

    pub async fn create_security_group(
        &self,
        name: &str,
        description: &str,
    ) -> Result<SecurityGroup, ApiError> {
        let body = json!({ "security_group": { "name": name, "description": description } });
        self.json_key(Req::post(N, "/security-groups", body), "security_group")
            .await
    }

    pub async fn list_security_groups(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<SecurityGroup>, ApiError> {
        let req = Req::get(N, "/security-groups").query_opt("name", name);
        self.list(
            req,
            "security_groups",
            Paging::Links("security_groups_links"),
        )
        .await
    }

    pub async fn delete_security_group(&self, id: &str) -> Result<(), ApiError> {
        self.call(Req::delete(N, format!("/security-groups/{}", seg(id))))
            .await
            .map(drop)
    }

    pub async fn create_security_group_rule(
        &self,
        rule: &NewRule,
    ) -> Result<SecurityGroupRule, ApiError> {
        let req = Req::post(N, "/security-group-rules", rule.body());
        self.json_key(req, "security_group_rule").await
    }

    pub async fn list_security_group_rules(
        &self,
        security_group_id: &str,
    ) -> Result<Vec<SecurityGroupRule>, ApiError> {
        let req =
            Req::get(N, "/security-group-rules").query("security_group_id", security_group_id);
        let paging = Paging::Links("security_group_rules_links");
        self.list(req, "security_group_rules", paging).await
    }

    pub async fn delete_security_group_rule(&self, id: &str) -> Result<(), ApiError> {
        self.call(Req::delete(N, format!("/security-group-rules/{}", seg(id))))
            .await
            .map(drop)
    }

    /// A floating IP from the external network, associated at once when `port_id` is given.
    pub async fn create_floating_ip(
        &self,
        floating_network_id: &str,
        port_id: Option<&str>,
    ) -> Result<FloatingIp, ApiError> {
        let mut fip = json!({ "floating_network_id": floating_network_id });
        if let Some(port) = port_id {
            fip["port_id"] = json!(port);
        }
        let req = Req::post(N, "/floatingips", json!({ "floatingip": fip }));
        self.json_key(req, "floatingip").await
    }

    pub async fn get_floating_ip(&self, id: &str) -> Result<FloatingIp, ApiError> {
        self.json_key(
            Req::get(N, format!("/floatingips/{}", seg(id))),
            "floatingip",
        )
        .await
    }

    /// Floating IPs, all or those bound to a port.
    pub async fn list_floating_ips(
        &self,
        port_id: Option<&str>,
    ) -> Result<Vec<FloatingIp>, ApiError> {
        let req = Req::get(N, "/floatingips").query_opt("port_id", port_id);
        self.list(req, "floatingips", Paging::Links("floatingips_links"))
            .await
    }

    pub async fn associate_floating_ip(
        &self,
        id: &str,
        port_id: &str,
    ) -> Result<FloatingIp, ApiError> {
        self.set_floating_ip_port(id, json!(port_id)).await
    }

    pub async fn disassociate_floating_ip(&self, id: &str) -> Result<FloatingIp, ApiError> {
        self.set_floating_ip_port(id, Value::Null).await
    }

    async fn set_floating_ip_port(&self, id: &str, port: Value) -> Result<FloatingIp, ApiError> {
        let body = json!({ "floatingip": { "port_id": port } });
        let req = Req::put(N, format!("/floatingips/{}", seg(id)), body);
        self.json_key(req, "floatingip").await
    }

    pub async fn delete_floating_ip(&self, id: &str) -> Result<(), ApiError> {
        self.call(Req::delete(N, format!("/floatingips/{}", seg(id))))
            .await
            .map(drop)
    }

    /// The ports of a device (a server's id gives its interfaces).
    pub async fn list_ports(&self, device_id: Option<&str>) -> Result<Vec<Port>, ApiError> {
        let req = Req::get(N, "/ports").query_opt("device_id", device_id);
        self.list(req, "ports", Paging::Links("ports_links")).await
    }

    pub async fn get_port(&self, id: &str) -> Result<Port, ApiError> {
        self.json_key(Req::get(N, format!("/ports/{}", seg(id))), "port")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_bodies() {
        assert_eq!(
            NewRule::ingress_tcp("sg", 22, "0.0.0.0/0").body(),
            json!({"security_group_rule": {
                "security_group_id": "sg", "direction": "ingress", "ethertype": "IPv4",
                "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                "remote_ip_prefix": "0.0.0.0/0"}})
        );
        assert_eq!(NewRule::ingress_tcp("sg", 22, "::/0").ethertype, "IPv6");
        let any = NewRule {
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: None,
            ..NewRule::ingress_tcp("sg", 1, "10.0.0.0/8")
        };
        assert_eq!(
            any.body(),
            json!({"security_group_rule": {"security_group_id": "sg", "direction": "ingress",
                                           "ethertype": "IPv4"}})
        );
    }

    #[test]
    fn neutron_answers() {
        let net: Network = serde_json::from_value(json!({
            "id": "n", "name": "public", "router:external": true, "subnets": ["s"],
            "admin_state_up": true, "mtu": 1500
        }))
        .unwrap();
        assert!(net.external);
        let fip: FloatingIp = serde_json::from_value(json!({
            "id": "f", "floating_ip_address": "172.24.4.228", "floating_network_id": "n",
            "port_id": null, "fixed_ip_address": null, "status": "DOWN",
            "port_details": null
        }))
        .unwrap();
        assert_eq!(fip.port_id, None);
    }
}
