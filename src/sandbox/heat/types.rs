//! The resource types the engine knows: property schemas and attributes, as Heat declares them
//! (heat/engine/resources/openstack/*). Hidden, deprecated property names that Heat still accepts
//! and translates (`network_id` → `network`) are listed with their replacement, so old templates
//! validate and the backend always receives the current names.

/// A property's data type (`properties.Schema` types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Boolean,
    Map,
    List,
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DefaultValue {
    None,
    Str(&'static str),
    Int(i64),
    Bool(bool),
    EmptyList,
    EmptyMap,
}

#[derive(Clone, Copy, Debug)]
pub struct Prop {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub default: DefaultValue,
    /// The allowed values, compared as text.
    pub allowed: &'static [&'static str],
    /// For a map: its keys; for a list: the keys of each item (a list of maps).
    pub fields: &'static [Prop],
    /// A hidden name Heat still accepts; its value moves to this property.
    pub replaced_by: Option<&'static str>,
}

const fn p(name: &'static str, kind: Kind) -> Prop {
    Prop {
        name,
        kind,
        required: false,
        default: DefaultValue::None,
        allowed: &[],
        fields: &[],
        replaced_by: None,
    }
}

const fn s(name: &'static str) -> Prop {
    p(name, Kind::String)
}

impl Prop {
    const fn req(mut self) -> Prop {
        self.required = true;
        self
    }
    const fn def(mut self, default: DefaultValue) -> Prop {
        self.default = default;
        self
    }
    const fn one_of(mut self, allowed: &'static [&'static str]) -> Prop {
        self.allowed = allowed;
        self
    }
    const fn with(mut self, fields: &'static [Prop]) -> Prop {
        self.fields = fields;
        self
    }
    const fn now(mut self, replacement: &'static str) -> Prop {
        self.replaced_by = Some(replacement);
        self
    }
}

#[derive(Debug)]
pub struct ResourceType {
    pub name: &'static str,
    /// Heat's Python class, which its dependency messages print (`Server "web"`).
    pub class: &'static str,
    pub properties: &'static [Prop],
    pub attributes: &'static [&'static str],
    /// Computed by the engine itself (OS::Heat::*), never sent to the backend.
    pub computed: bool,
}

impl ResourceType {
    pub fn prop(&self, name: &str) -> Option<&'static Prop> {
        self.properties.iter().find(|p| p.name == name)
    }
}

use DefaultValue as D;
use Kind::*;

const SERVER_NETWORKS: &[Prop] = &[
    s("uuid").now("network"),
    s("network"),
    s("allocate_network").one_of(&["none", "auto"]),
    s("fixed_ip"),
    s("floating_ip"),
    s("port"),
    p("port_extra_properties", Map),
    s("subnet"),
    s("tag"),
];

const BLOCK_DEVICE_MAPPING: &[Prop] = &[
    s("device_name").req(),
    s("volume_id"),
    s("snapshot_id"),
    p("volume_size", Integer),
    p("delete_on_termination", Boolean),
];

const BLOCK_DEVICE_MAPPING_V2: &[Prop] = &[
    s("device_name"),
    s("volume_id"),
    s("image"),
    s("image_id").now("image"),
    s("snapshot_id"),
    p("swap_size", Integer),
    s("device_type"),
    s("disk_bus"),
    p("boot_index", Integer),
    p("volume_size", Integer),
    p("delete_on_termination", Boolean),
    p("ephemeral_size", Integer),
    s("ephemeral_format"),
];

const SERVER: &[Prop] = &[
    s("admin_pass"),
    s("admin_user"),
    s("availability_zone"),
    p("block_device_mapping", List).with(BLOCK_DEVICE_MAPPING),
    p("block_device_mapping_v2", List).with(BLOCK_DEVICE_MAPPING_V2),
    p("config_drive", Boolean),
    p("deployment_swift_data", Map),
    s("diskConfig").one_of(&["AUTO", "MANUAL"]),
    s("flavor").req(),
    s("flavor_update_policy")
        .def(D::Str("RESIZE"))
        .one_of(&["RESIZE", "REPLACE"]),
    s("image"),
    s("image_update_policy").def(D::Str("REBUILD")).one_of(&[
        "REBUILD",
        "REPLACE",
        "REBUILD_PRESERVE_EPHEMERAL",
    ]),
    s("key_name"),
    p("metadata", Map),
    s("name"),
    p("networks", List).with(SERVER_NETWORKS),
    p("personality", Map).def(D::EmptyMap),
    s("reservation_id"),
    p("scheduler_hints", Map),
    p("security_groups", List).def(D::EmptyList),
    s("software_config_transport")
        .def(D::Str("POLL_SERVER_CFN"))
        .one_of(&[
            "POLL_SERVER_CFN",
            "POLL_SERVER_HEAT",
            "POLL_TEMP_URL",
            "ZAQAR_MESSAGE",
        ]),
    p("tags", List),
    s("user_data").def(D::Str("")),
    s("user_data_format").def(D::Str("HEAT_CFNTOOLS")).one_of(&[
        "HEAT_CFNTOOLS",
        "RAW",
        "SOFTWARE_CONFIG",
    ]),
    s("user_data_update_policy")
        .def(D::Str("REPLACE"))
        .one_of(&["REPLACE", "IGNORE"]),
];

const ALLOCATION_POOL: &[Prop] = &[s("start").req(), s("end").req()];
const HOST_ROUTE: &[Prop] = &[s("destination").req(), s("nexthop").req()];
const IPV6_MODES: &[&str] = &["dhcpv6-stateful", "dhcpv6-stateless", "slaac"];

const SUBNET: &[Prop] = &[
    s("network_id").now("network"),
    s("network").req(),
    s("subnetpool"),
    p("prefixlen", Integer),
    s("cidr"),
    p("value_specs", Map).def(D::EmptyMap),
    s("name"),
    p("ip_version", Integer).def(D::Int(4)).one_of(&["4", "6"]),
    p("dns_nameservers", List).def(D::EmptyList),
    s("gateway_ip"),
    p("enable_dhcp", Boolean).def(D::Bool(true)),
    p("allocation_pools", List).with(ALLOCATION_POOL),
    s("tenant_id"),
    p("host_routes", List).with(HOST_ROUTE),
    s("ipv6_ra_mode").one_of(IPV6_MODES),
    s("ipv6_address_mode").one_of(IPV6_MODES),
    s("segment"),
    p("tags", List),
];

const FIXED_IP: &[Prop] = &[s("subnet_id").now("subnet"), s("subnet"), s("ip_address")];
const ADDRESS_PAIR: &[Prop] = &[s("mac_address"), s("ip_address").req()];

const PORT: &[Prop] = &[
    p("admin_state_up", Boolean).def(D::Bool(true)),
    p("allowed_address_pairs", List).with(ADDRESS_PAIR),
    s("binding:vnic_type").def(D::Str("normal")).one_of(&[
        "normal",
        "direct",
        "macvtap",
        "direct-physical",
        "baremetal",
        "virtio-forwarder",
        "smart-nic",
    ]),
    s("device_id"),
    s("device_owner"),
    s("dns_name"),
    p("fixed_ips", List).with(FIXED_IP),
    s("mac_address"),
    s("name"),
    s("network_id").now("network"),
    s("network").req(),
    p("no_fixed_ips", Boolean).def(D::Bool(false)),
    p("port_security_enabled", Boolean),
    p("propagate_uplink_status", Boolean),
    s("qos_policy"),
    s("replacement_policy"),
    p("security_groups", List),
    p("tags", List),
    p("value_specs", Map).def(D::EmptyMap),
];

const NET: &[Prop] = &[
    p("admin_state_up", Boolean).def(D::Bool(true)),
    p("dhcp_agent_ids", List),
    s("dns_domain"),
    s("name"),
    p("port_security_enabled", Boolean),
    s("qos_policy"),
    p("shared", Boolean).def(D::Bool(false)),
    p("tags", List),
    s("tenant_id"),
    p("value_specs", Map).def(D::EmptyMap),
];

const RULE: &[Prop] = &[
    s("description"),
    s("direction")
        .def(D::Str("ingress"))
        .one_of(&["ingress", "egress"]),
    s("ethertype").def(D::Str("IPv4")).one_of(&["IPv4", "IPv6"]),
    p("port_range_min", Integer),
    p("port_range_max", Integer),
    s("protocol"),
    s("remote_group_id"),
    s("remote_ip_prefix"),
    s("remote_mode")
        .def(D::Str("remote_ip_prefix"))
        .one_of(&["remote_ip_prefix", "remote_group_id"]),
];

const SECURITY_GROUP: &[Prop] = &[
    s("description"),
    s("name"),
    p("rules", List).def(D::EmptyList).with(RULE),
];

const FLOATING_IP: &[Prop] = &[
    s("floating_network_id").now("floating_network"),
    s("floating_network").req(),
    s("floating_subnet"),
    p("value_specs", Map).def(D::EmptyMap),
    s("port_id"),
    s("fixed_ip_address"),
    s("floating_ip_address"),
    s("dns_name"),
    s("dns_domain"),
];

const FLOATING_IP_ASSOCIATION: &[Prop] = &[
    s("floatingip_id").req(),
    s("port_id").req(),
    s("fixed_ip_address"),
];

const EXTERNAL_FIXED_IP: &[Prop] = &[s("ip_address"), s("subnet")];
const GATEWAY: &[Prop] = &[
    s("network").req(),
    p("enable_snat", Boolean),
    p("external_fixed_ips", List).with(EXTERNAL_FIXED_IP),
];

const ROUTER: &[Prop] = &[
    p("admin_state_up", Boolean).def(D::Bool(true)),
    p("availability_zone_hints", List),
    p("distributed", Boolean),
    p("external_gateway_info", Map).with(GATEWAY),
    p("ha", Boolean),
    s("l3_agent_id").now("l3_agent_ids"),
    p("l3_agent_ids", List),
    s("name"),
    p("tags", List),
    p("value_specs", Map).def(D::EmptyMap),
];

const ROUTER_INTERFACE: &[Prop] = &[
    s("router_id").now("router"),
    s("router").req(),
    s("subnet_id").now("subnet"),
    s("subnet"),
    s("port_id").now("port"),
    s("port"),
];

const VOLUME: &[Prop] = &[
    s("availability_zone"),
    s("backup_id"),
    s("description"),
    s("image"),
    s("imageRef").now("image"),
    p("metadata", Map),
    p("multiattach", Boolean),
    s("name"),
    p("read_only", Boolean),
    p("scheduler_hints", Map),
    p("size", Integer),
    s("snapshot_id"),
    s("source_volid"),
    s("volume_type"),
];

const VOLUME_ATTACHMENT: &[Prop] = &[
    s("instance_uuid").req(),
    s("volume_id").req(),
    s("mountpoint"),
];

const KEY_PAIR: &[Prop] = &[
    s("name").req(),
    s("public_key"),
    p("save_private_key", Boolean).def(D::Bool(false)),
    s("type").one_of(&["ssh", "x509"]),
    s("user"),
];

const NOVA_FLOATING_IP_ASSOCIATION: &[Prop] = &[s("server_id").req(), s("floating_ip").req()];

const CONFIG_INPUT: &[Prop] = &[
    s("name").req(),
    s("description"),
    s("type"),
    p("default", Any),
    p("replace_on_change", Boolean),
];
const CONFIG_OUTPUT: &[Prop] = &[
    s("name").req(),
    s("description"),
    s("type"),
    p("error_output", Boolean),
];

const SOFTWARE_CONFIG: &[Prop] = &[
    s("group").def(D::Str("Heat::Ungrouped")),
    s("config"),
    p("options", Map),
    p("inputs", List).with(CONFIG_INPUT),
    p("outputs", List).with(CONFIG_OUTPUT),
];

const CLOUD_CONFIG: &[Prop] = &[p("cloud_config", Map)];

const MIME_PART: &[Prop] = &[
    s("config"),
    s("filename"),
    s("type").def(D::Str("text")).one_of(&["text", "multipart"]),
    s("subtype"),
];

const MULTIPART_MIME: &[Prop] = &[
    s("group").def(D::Str("Heat::Ungrouped")),
    p("parts", List).def(D::EmptyList).with(MIME_PART),
];

pub const CHARACTER_CLASSES: &[&str] = &[
    "lettersdigits",
    "letters",
    "lowercase",
    "uppercase",
    "digits",
    "hexdigits",
    "octdigits",
];

const CHAR_CLASS: &[Prop] = &[
    s("class")
        .def(D::Str("lettersdigits"))
        .one_of(CHARACTER_CLASSES),
    p("min", Integer).def(D::Int(1)),
];
const CHAR_SEQUENCE: &[Prop] = &[s("sequence").req(), p("min", Integer).def(D::Int(1))];

const RANDOM_STRING: &[Prop] = &[
    p("length", Integer).def(D::Int(32)),
    s("sequence").one_of(CHARACTER_CLASSES),
    p("character_classes", List).with(CHAR_CLASS),
    p("character_sequences", List).with(CHAR_SEQUENCE),
    s("salt"),
];

const SWIFT_CONTAINER: &[Prop] = &[
    s("name"),
    s("X-Container-Read"),
    s("X-Container-Write"),
    p("X-Container-Meta", Map).def(D::EmptyMap),
    p("X-Account-Meta", Map).def(D::EmptyMap),
    p("PurgeOnDelete", Boolean).def(D::Bool(false)),
];

/// Every resource has Heat's `show` attribute (all of the physical resource, as the API shows it).
pub static TYPES: &[ResourceType] = &[
    ResourceType {
        name: "OS::Nova::Server",
        class: "Server",
        properties: SERVER,
        attributes: &[
            "accessIPv4",
            "accessIPv6",
            "addresses",
            "console_urls",
            "first_address",
            "instance_name",
            "name",
            "networks",
            "os_collect_config",
            "tags",
            "show",
        ],
        computed: false,
    },
    ResourceType {
        name: "OS::Nova::KeyPair",
        class: "KeyPair",
        properties: KEY_PAIR,
        attributes: &["private_key", "public_key", "show"],
        computed: false,
    },
    ResourceType {
        name: "OS::Nova::FloatingIPAssociation",
        class: "NovaFloatingIpAssociation",
        properties: NOVA_FLOATING_IP_ASSOCIATION,
        attributes: &["show"],
        computed: false,
    },
    ResourceType {
        name: "OS::Neutron::Net",
        class: "Net",
        properties: NET,
        attributes: &[
            "admin_state_up",
            "l2_adjacency",
            "mtu",
            "name",
            "qos_policy_id",
            "segments",
            "status",
            "subnets",
            "tenant_id",
            "show",
        ],
        computed: false,
    },
    ResourceType {
        name: "OS::Neutron::Subnet",
        class: "Subnet",
        properties: SUBNET,
        attributes: &[
            "name",
            "network_id",
            "tenant_id",
            "allocation_pools",
            "gateway_ip",
            "host_routes",
            "ip_version",
            "cidr",
            "dns_nameservers",
            "enable_dhcp",
            "show",
        ],
        computed: false,
    },
    ResourceType {
        name: "OS::Neutron::Port",
        class: "Port",
        properties: PORT,
        attributes: &[
            "admin_state_up",
            "allowed_address_pairs",
            "device_id",
            "device_owner",
            "dns_assignment",
            "fixed_ips",
            "mac_address",
            "name",
            "network_id",
            "port_security_enabled",
            "qos_policy_id",
            "security_groups",
            "status",
            "subnets",
            "tenant_id",
            "show",
        ],
        computed: false,
    },
    ResourceType {
        name: "OS::Neutron::SecurityGroup",
        class: "SecurityGroup",
        properties: SECURITY_GROUP,
        attributes: &["show"],
        computed: false,
    },
    ResourceType {
        name: "OS::Neutron::FloatingIP",
        class: "FloatingIP",
        properties: FLOATING_IP,
        attributes: &[
            "router_id",
            "tenant_id",
            "floating_network_id",
            "fixed_ip_address",
            "floating_ip_address",
            "port_id",
            "show",
        ],
        computed: false,
    },
    ResourceType {
        name: "OS::Neutron::FloatingIPAssociation",
        class: "FloatingIPAssociation",
        properties: FLOATING_IP_ASSOCIATION,
        attributes: &["show"],
        computed: false,
    },
    ResourceType {
        name: "OS::Neutron::Router",
        class: "Router",
        properties: ROUTER,
        attributes: &[
            "admin_state_up",
            "external_gateway_info",
            "name",
            "status",
            "tenant_id",
            "show",
        ],
        computed: false,
    },
    ResourceType {
        name: "OS::Neutron::RouterInterface",
        class: "RouterInterface",
        properties: ROUTER_INTERFACE,
        attributes: &["show"],
        computed: false,
    },
    ResourceType {
        name: "OS::Cinder::Volume",
        class: "CinderVolume",
        properties: VOLUME,
        attributes: &[
            "attachments",
            "attachments_list",
            "availability_zone",
            "bootable",
            "created_at",
            "display_description",
            "display_name",
            "encrypted",
            "metadata",
            "metadata_values",
            "multiattach",
            "size",
            "snapshot_id",
            "source_volid",
            "status",
            "volume_type",
            "show",
        ],
        computed: false,
    },
    ResourceType {
        name: "OS::Cinder::VolumeAttachment",
        class: "CinderVolumeAttachment",
        properties: VOLUME_ATTACHMENT,
        attributes: &["show"],
        computed: false,
    },
    ResourceType {
        name: "OS::Heat::SoftwareConfig",
        class: "SoftwareConfig",
        properties: SOFTWARE_CONFIG,
        attributes: &["config", "show"],
        computed: true,
    },
    ResourceType {
        name: "OS::Heat::CloudConfig",
        class: "CloudConfig",
        properties: CLOUD_CONFIG,
        attributes: &["config", "show"],
        computed: true,
    },
    ResourceType {
        name: "OS::Heat::MultipartMime",
        class: "MultipartMime",
        properties: MULTIPART_MIME,
        attributes: &["config", "show"],
        computed: true,
    },
    ResourceType {
        name: "OS::Heat::RandomString",
        class: "RandomString",
        properties: RANDOM_STRING,
        attributes: &["value", "show"],
        computed: true,
    },
    ResourceType {
        name: "OS::Swift::Container",
        class: "SwiftContainer",
        properties: SWIFT_CONTAINER,
        attributes: &[
            "DomainName",
            "WebsiteURL",
            "RootURL",
            "ObjectCount",
            "BytesUsed",
            "HeadContainer",
            "show",
        ],
        computed: false,
    },
];

pub fn lookup(name: &str) -> Option<&'static ResourceType> {
    TYPES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_brief_type_is_known_and_hidden_names_point_at_real_properties() {
        for t in TYPES {
            assert!(t.attributes.contains(&"show"), "{}", t.name);
            let check = |props: &[Prop]| {
                for prop in props {
                    if let Some(new) = prop.replaced_by {
                        assert!(
                            props.iter().any(|p| p.name == new),
                            "{} {}",
                            t.name,
                            prop.name
                        );
                    }
                }
            };
            check(t.properties);
            t.properties.iter().for_each(|p| check(p.fields));
        }
        assert_eq!(TYPES.len(), 18);
        assert!(lookup("OS::Heat::RandomString").is_some_and(|t| t.computed));
        assert!(lookup("OS::Foo::Bar").is_none());
    }
}
