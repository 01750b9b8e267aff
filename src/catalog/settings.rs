//! Build settings: the optional keys of build-vars.yml, layered over factory.yml `defaults:`,
//! layered over built-in defaults.

use std::time::Duration;

use serde::Serialize;

use super::reader::{MapReader, Sink};

/// The final image's visibility in Glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Private,
    Shared,
    Community,
    Public,
}

impl Visibility {
    const NAMES: [&'static str; 4] = ["private", "shared", "community", "public"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "private" => Some(Self::Private),
            "shared" => Some(Self::Shared),
            "community" => Some(Self::Community),
            "public" => Some(Self::Public),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionAction {
    Delete,
    Hide,
}

/// How long each step of a build may take before it is abandoned.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeouts {
    #[serde(with = "humantime_serde")]
    pub boot: Duration,
    #[serde(with = "humantime_serde")]
    pub ssh: Duration,
    #[serde(with = "humantime_serde")]
    pub provision: Duration,
    #[serde(with = "humantime_serde")]
    pub snapshot: Duration,
    #[serde(with = "humantime_serde")]
    pub test: Duration,
}

mod humantime_serde {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Publish {
    pub visibility: Visibility,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Retention {
    /// Newest images of one OS definition kept; older ones get `action`.
    pub keep: u32,
    pub action: RetentionAction,
}

/// Everything a build needs besides the definition's identity, with every default applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BuildSettings {
    pub flavor: String,
    pub networks: Vec<String>,
    pub floating_ip_pool: Option<String>,
    pub security_groups: Vec<String>,
    pub ssh_user: String,
    /// GiB; 0 boots the builder from the image on the hypervisor's local disk.
    pub volume_size_gib: u32,
    pub timeouts: Timeouts,
    pub min_disk_gib: Option<u32>,
    pub min_ram_mib: Option<u32>,
    /// `{name}` is the definition's image name, the rest is strftime (UTC).
    pub image_name: String,
    /// Glob patterns of base-image properties that the new image keeps.
    pub keep_properties: Vec<String>,
    pub tests: Vec<String>,
    pub publish: Publish,
    pub retention: Retention,
}

impl Default for BuildSettings {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        BuildSettings {
            flavor: "m1.small".into(),
            networks: Vec::new(),
            floating_ip_pool: None,
            security_groups: Vec::new(),
            ssh_user: "debian".into(),
            volume_size_gib: 0,
            timeouts: Timeouts {
                boot: minutes(15),
                ssh: minutes(10),
                provision: minutes(60),
                snapshot: minutes(30),
                test: minutes(30),
            },
            min_disk_gib: None,
            min_ram_mib: None,
            image_name: DEFAULT_IMAGE_NAME.into(),
            keep_properties: ["hw_*", "os_*", "architecture", "hypervisor_type"]
                .map(String::from)
                .to_vec(),
            tests: Vec::new(),
            publish: Publish {
                visibility: Visibility::Private,
            },
            retention: Retention {
                keep: 3,
                action: RetentionAction::Delete,
            },
        }
    }
}

/// The seed's naming: `<name>-YYYY-MM-DD-HHMM`.
pub const DEFAULT_IMAGE_NAME: &str = "{name}-%Y-%m-%d-%H%M";

/// The settings keys as written in YAML, for unknown-key detection.
pub const KEYS: &[&str] = &[
    "flavor",
    "networks",
    "floating_ip_pool",
    "security_groups",
    "ssh_user",
    "volume_size",
    "timeouts",
    "min_disk",
    "min_ram",
    "image_name",
    "keep_properties",
    "tests",
    "publish",
    "retention",
];

/// Settings as one layer wrote them: `None` means "not said here, look below".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layer {
    pub flavor: Option<String>,
    pub networks: Option<Vec<String>>,
    pub floating_ip_pool: Option<String>,
    pub security_groups: Option<Vec<String>>,
    pub ssh_user: Option<String>,
    pub volume_size_gib: Option<u32>,
    pub boot: Option<Duration>,
    pub ssh: Option<Duration>,
    pub provision: Option<Duration>,
    pub snapshot: Option<Duration>,
    pub test: Option<Duration>,
    pub min_disk_gib: Option<u32>,
    pub min_ram_mib: Option<u32>,
    pub image_name: Option<String>,
    pub keep_properties: Option<Vec<String>>,
    pub tests: Option<Vec<String>>,
    pub visibility: Option<Visibility>,
    pub retention_keep: Option<u32>,
    pub retention_action: Option<RetentionAction>,
}

impl Layer {
    /// Reads the settings keys of one mapping (build-vars.yml's top level, or factory.yml's
    /// `defaults:`). The caller's reader reports unknown keys.
    pub fn read(map: &mut MapReader, sink: &mut Sink) -> Layer {
        let mut layer = Layer {
            flavor: map.string("flavor", sink),
            networks: map.string_list("networks", sink),
            floating_ip_pool: map.string("floating_ip_pool", sink),
            security_groups: map.string_list("security_groups", sink),
            ssh_user: map.string("ssh_user", sink),
            volume_size_gib: map.uint("volume_size", "GiB", sink),
            min_disk_gib: map.uint("min_disk", "GiB", sink),
            min_ram_mib: map.uint("min_ram", "MiB", sink),
            keep_properties: map.string_list("keep_properties", sink),
            tests: map.string_list("tests", sink),
            ..Layer::default()
        };
        if let Some(node) = map.node("image_name") {
            match node.scalar_text() {
                Some(pattern) => match check_image_name_pattern(&pattern) {
                    Ok(()) => layer.image_name = Some(pattern),
                    Err(why) => sink.error(node.pos, format!("`image_name` {why}")),
                },
                None => sink.error(
                    node.pos,
                    format!("`image_name` must be a string, found {}", node.kind()),
                ),
            }
        }
        if let Some(mut t) = map.map("timeouts", sink) {
            layer.boot = t.duration("boot", sink);
            layer.ssh = t.duration("ssh", sink);
            layer.provision = t.duration("provision", sink);
            layer.snapshot = t.duration("snapshot", sink);
            layer.test = t.duration("test", sink);
            t.finish(sink);
        }
        if let Some(mut p) = map.map("publish", sink) {
            if let Some(node) = p.node("visibility") {
                let text = node.scalar_text().unwrap_or_default();
                match Visibility::parse(&text) {
                    Some(v) => layer.visibility = Some(v),
                    None => sink.error(
                        node.pos,
                        format!(
                            "`publish.visibility` must be one of {}, found `{text}`",
                            Visibility::NAMES.join(", ")
                        ),
                    ),
                }
            }
            p.finish(sink);
        }
        if let Some(mut r) = map.map("retention", sink) {
            layer.retention_keep = r.uint("keep", "images", sink);
            if layer.retention_keep == Some(0) {
                let pos = r.pos_of("keep").unwrap_or_default();
                sink.error(
                    pos,
                    "`retention.keep` must be at least 1: the newest image is always kept",
                );
                layer.retention_keep = None;
            }
            if let Some(node) = r.node("action") {
                match node.scalar_text().as_deref() {
                    Some("delete") => layer.retention_action = Some(RetentionAction::Delete),
                    Some("hide") => layer.retention_action = Some(RetentionAction::Hide),
                    other => sink.error(
                        node.pos,
                        format!(
                            "`retention.action` must be `delete` or `hide`, found `{}`",
                            other.unwrap_or(node.kind())
                        ),
                    ),
                }
            }
            r.finish(sink);
        }
        layer
    }

    /// Applies this layer over `base`.
    pub fn apply(&self, base: &mut BuildSettings) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        set(&mut base.flavor, &self.flavor);
        set(&mut base.networks, &self.networks);
        if self.floating_ip_pool.is_some() {
            base.floating_ip_pool = self.floating_ip_pool.clone();
        }
        set(&mut base.security_groups, &self.security_groups);
        set(&mut base.ssh_user, &self.ssh_user);
        set(&mut base.volume_size_gib, &self.volume_size_gib);
        set(&mut base.timeouts.boot, &self.boot);
        set(&mut base.timeouts.ssh, &self.ssh);
        set(&mut base.timeouts.provision, &self.provision);
        set(&mut base.timeouts.snapshot, &self.snapshot);
        set(&mut base.timeouts.test, &self.test);
        if self.min_disk_gib.is_some() {
            base.min_disk_gib = self.min_disk_gib;
        }
        if self.min_ram_mib.is_some() {
            base.min_ram_mib = self.min_ram_mib;
        }
        set(&mut base.image_name, &self.image_name);
        set(&mut base.keep_properties, &self.keep_properties);
        set(&mut base.tests, &self.tests);
        set(&mut base.publish.visibility, &self.visibility);
        set(&mut base.retention.keep, &self.retention_keep);
        set(&mut base.retention.action, &self.retention_action);
    }
}

/// An image name pattern holds `{name}` at most as placeholder and valid strftime fields.
pub fn check_image_name_pattern(pattern: &str) -> Result<(), String> {
    let rest = pattern.replace("{name}", "");
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "`{pattern}`: the only placeholder is `{{name}}`; dates use strftime fields such as %Y-%m-%d-%H%M"
        ));
    }
    let bad = chrono::format::StrftimeItems::new(&rest)
        .any(|item| matches!(item, chrono::format::Item::Error));
    if bad {
        return Err(format!(
            "`{pattern}` holds an invalid strftime field; use fields such as %Y %m %d %H %M"
        ));
    }
    if pattern.contains('/') {
        return Err(format!("`{pattern}` must not contain `/`"));
    }
    Ok(())
}

/// The image name for a build started at `when`.
pub fn image_name(pattern: &str, name: &str, when: chrono::DateTime<chrono::Utc>) -> String {
    let (before, after) = match pattern.split_once("{name}") {
        Some((b, a)) => (b, Some(a)),
        None => (pattern, None),
    };
    let fmt = |p: &str| when.format(p).to_string();
    match after {
        Some(after) => format!("{}{name}{}", fmt(before), fmt(after)),
        None => fmt(before),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn default_image_name_follows_the_seed() {
        let when = chrono::Utc.with_ymd_and_hms(2026, 11, 25, 9, 5, 0).unwrap();
        assert_eq!(
            image_name(DEFAULT_IMAGE_NAME, "bundle-bookworm-lamp", when),
            "bundle-bookworm-lamp-2026-11-25-0905"
        );
        // A % in the name itself must not be read as a strftime field.
        assert_eq!(image_name("{name}-%Y", "a%Hb", when), "a%Hb-2026");
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(check_image_name_pattern("{name}-%Y").is_ok());
        assert!(check_image_name_pattern("{nom}-%Y").is_err());
        assert!(check_image_name_pattern("{name}-%Q").is_err());
        assert!(check_image_name_pattern("a/{name}").is_err());
    }
}
