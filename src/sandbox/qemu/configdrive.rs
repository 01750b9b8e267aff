//! The OpenStack config drive, as Nova's libvirt driver makes it: an ISO 9660 image labelled
//! `config-2` (made by `genisoimage` with Nova's options, so no mounting and no root), holding
//! `openstack/<version>/{meta_data.json, user_data, vendor_data.json, vendor_data2.json,
//! network_data.json}` for each metadata version Nova serves plus `latest`. cloud-init's
//! ConfigDrive datasource picks the newest version it knows and needs `uuid` in meta_data.json.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Value, json};

use crate::sandbox::driver::{DriverError, DriverResult, ServerSpec};

/// Nova's metadata versions, oldest first, with the files each one added.
const VERSIONS: [&str; 9] = [
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
];
const HAVANA: &str = "2013-10-17";
const LIBERTY: &str = "2015-10-15";
const NEWTON_TWO: &str = "2016-10-06";

/// The ISO tools tried in turn: genisoimage as Nova runs it, or xorriso's mkisofs emulation.
const ISO_TOOLS: [(&str, &[&str]); 3] = [
    ("genisoimage", &[]),
    ("mkisofs", &[]),
    ("xorriso", &["-as", "mkisofs"]),
];

/// Why no config drive can be made here, if none can (no ISO tool on the PATH).
pub fn tool_missing() -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = ISO_TOOLS
        .iter()
        .any(|(tool, _)| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    (!found).then(|| {
        "no genisoimage, mkisofs or xorriso to make config drives (apt-get install genisoimage)"
            .to_string()
    })
}

/// Nova's `sanitize_hostname`: lower case, `-` for spaces and `_`, letters, digits, `.` and `-`
/// only, at most 63 characters, no leading or trailing `.`/`-`.
pub fn hostname(name: &str) -> String {
    let h: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '_' { '-' } else { c })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .take(63)
        .collect();
    let h = h.trim_matches(|c| c == '.' || c == '-');
    if h.is_empty() {
        "server".into()
    } else {
        h.into()
    }
}

/// `meta_data.json` of the newest version (older versions hold the same, as cloud-init reads
/// only the keys it knows).
pub fn meta_data(spec: &ServerSpec, project_id: &str) -> Value {
    let mut md = json!({
        "uuid": spec.id,
        "meta": spec.metadata,
        "hostname": format!("{}.novalocal", hostname(&spec.name)),
        "name": spec.name,
        "launch_index": 0,
        "availability_zone": "nova",
        "random_seed": base64::engine::general_purpose::STANDARD.encode(random_bytes::<512>()),
        "project_id": project_id,
        "devices": [],
        "dedicated_cpus": [],
    });
    if let (Some(name), Some(key)) = (&spec.key_name, &spec.public_key) {
        md["public_keys"] = json!({ name: key });
        md["keys"] = json!([{"name": name, "type": "ssh", "data": key}]);
    }
    md
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::fill(&mut b[..]);
    b
}

/// `network_data.json` as Nova writes it for DHCP ports: one link per NIC, named after the
/// Neutron port. The guest's NIC has the port's MAC, which is how cloud-init matches them; QEMU's
/// user-mode network answers its DHCP (the guest sees 10.0.2.15, the host reaches it through the
/// port's address).
pub fn network_data(spec: &ServerSpec) -> Value {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    for (i, nic) in spec.nics.iter().enumerate() {
        let tap: String = format!("tap{}", nic.port_id.chars().take(11).collect::<String>());
        links.push(json!({
            "id": tap, "vif_id": nic.port_id, "type": "ovs", "mtu": 1500,
            "ethernet_mac_address": nic.mac,
        }));
        networks.push(json!({
            "id": format!("network{i}"), "type": "ipv4_dhcp", "link": tap,
            "network_id": nic.network_id,
        }));
    }
    json!({"links": links, "networks": networks, "services": []})
}

/// The drive's files, by path inside it.
pub fn files(spec: &ServerSpec, project_id: &str) -> DriverResult<Vec<(String, Vec<u8>)>> {
    let user_data = match &spec.user_data {
        Some(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| DriverError::Failed(format!("user data is not base64: {e}")))?,
        ),
        None => None,
    };
    let json_bytes = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    let md = json_bytes(&meta_data(spec, project_id));
    let net = json_bytes(&network_data(spec));
    let mut out = Vec::new();
    for version in VERSIONS.iter().copied().chain(["latest"]) {
        // Dates compare as text; `latest` has everything.
        let since = |v: &str| version == "latest" || version >= v;
        let dir = format!("openstack/{version}");
        out.push((format!("{dir}/meta_data.json"), md.clone()));
        if let Some(data) = &user_data {
            out.push((format!("{dir}/user_data"), data.clone()));
        }
        if since(HAVANA) {
            out.push((format!("{dir}/vendor_data.json"), b"{}".to_vec()));
        }
        if since(LIBERTY) {
            out.push((format!("{dir}/network_data.json"), net.clone()));
        }
        if since(NEWTON_TWO) {
            out.push((format!("{dir}/vendor_data2.json"), b"{}".to_vec()));
        }
    }
    Ok(out)
}

/// Writes the config drive ISO to `dest` (through a temp dir beside it).
pub async fn build(spec: &ServerSpec, project_id: &str, dest: &Path) -> DriverResult<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let fail =
        |what: &str, e: std::io::Error| DriverError::Failed(format!("config drive: {what}: {e}"));
    let staging = tempfile::Builder::new()
        .prefix(".config-drive")
        .tempdir_in(parent)
        .map_err(|e| fail("temp dir", e))?;
    for (path, bytes) in files(spec, project_id)? {
        let file = staging.path().join(&path);
        if let Some(dir) = file.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| fail("staging", e))?;
        }
        tokio::fs::write(&file, bytes)
            .await
            .map_err(|e| fail("staging", e))?;
    }
    let part = PathBuf::from(format!("{}.part", dest.display()));
    make_iso(staging.path(), &part).await?;
    tokio::fs::rename(&part, dest)
        .await
        .map_err(|e| fail("rename", e))
}

/// Runs the first ISO tool found, with Nova's options.
async fn make_iso(dir: &Path, out: &Path) -> DriverResult<()> {
    for (tool, prefix) in ISO_TOOLS {
        let result = tokio::process::Command::new(tool)
            .args(prefix)
            .arg("-o")
            .arg(out)
            .args(["-ldots", "-allow-lowercase", "-allow-multidot", "-l"])
            .args(["-publisher", "OpenStack Compute (image-factory sandbox)"])
            .args(["-quiet", "-J", "-r", "-V", "config-2"])
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await;
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(DriverError::Failed(format!("config drive: {tool}: {e}"))),
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => {
                return Err(DriverError::Failed(format!(
                    "config drive: {tool} failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
        }
    }
    Err(DriverError::Failed(
        "config drive: no genisoimage, mkisofs or xorriso (apt-get install genisoimage)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::driver::Nic;
    use std::collections::BTreeMap;

    fn spec() -> ServerSpec {
        ServerSpec {
            id: "0f6c2a8e-5b1d-4c3e-9a7f-1d2e3f4a5b6c".into(),
            name: "Web_1 test".into(),
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
            image_file: None,
            disk: PathBuf::from("/nonexistent"),
            root_volume: false,
            key_name: Some("k1".into()),
            public_key: Some("ssh-ed25519 AAAA k1@host".into()),
            user_data: Some(base64::engine::general_purpose::STANDARD.encode("#cloud-config\n")),
            metadata: BTreeMap::from([("role".to_string(), "web".to_string())]),
            nics: vec![Nic {
                network: "private".into(),
                mac: "fa:16:3e:00:11:22".into(),
                ip: "127.42.0.2".into(),
                port_id: "cd9f6d46-4a3a-43ab-a466-994af9db96fc".into(),
                network_id: "99e88329-f20d-4741-9593-25bf07847b16".into(),
            }],
            floating_ips: Vec::new(),
            config_drive: true,
            project_id: "p1".into(),
        }
    }

    #[test]
    fn meta_data_has_what_cloud_init_reads() {
        let md = meta_data(&spec(), "p1");
        assert_eq!(md["uuid"], "0f6c2a8e-5b1d-4c3e-9a7f-1d2e3f4a5b6c");
        assert_eq!(md["hostname"], "web-1-test.novalocal");
        assert_eq!(md["public_keys"]["k1"], "ssh-ed25519 AAAA k1@host");
        assert_eq!(md["keys"][0]["type"], "ssh");
        assert_eq!(md["meta"]["role"], "web");
        assert_eq!(md["project_id"], "p1");
        let seed = md["random_seed"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(seed)
                .unwrap()
                .len(),
            512
        );
    }

    #[test]
    fn network_data_matches_novas_dhcp_layout() {
        let nd = network_data(&spec());
        assert_eq!(
            nd["links"][0],
            json!({"id": "tapcd9f6d46-4a", "vif_id": "cd9f6d46-4a3a-43ab-a466-994af9db96fc",
                   "type": "ovs", "mtu": 1500, "ethernet_mac_address": "fa:16:3e:00:11:22"})
        );
        assert_eq!(nd["networks"][0]["type"], "ipv4_dhcp");
        assert_eq!(nd["networks"][0]["link"], "tapcd9f6d46-4a");
    }

    #[test]
    fn every_version_has_its_files() {
        let files = files(&spec(), "p1").unwrap();
        let has = |p: &str| files.iter().any(|(f, _)| f == p);
        assert!(has("openstack/latest/meta_data.json"));
        assert!(has("openstack/latest/user_data"));
        assert!(has("openstack/2018-08-27/network_data.json"));
        assert!(!has("openstack/2012-08-10/network_data.json"));
        assert!(!has("openstack/2015-10-15/vendor_data2.json"));
        let (_, ud) = files
            .iter()
            .find(|(f, _)| f == "openstack/latest/user_data")
            .unwrap();
        assert_eq!(ud, b"#cloud-config\n");
        assert_eq!(hostname("--"), "server");
    }

    #[tokio::test]
    async fn the_iso_is_labelled_config_2() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("cd.iso");
        match build(&spec(), "p1", &iso).await {
            Err(DriverError::Failed(m)) if m.contains("no genisoimage") => {
                eprintln!("skipped: {m}");
                return;
            }
            other => other.unwrap(),
        }
        let bytes = std::fs::read(&iso).unwrap();
        // The primary volume descriptor (sector 16) holds the volume id at offset 40.
        assert_eq!(&bytes[32768 + 40..32768 + 48], b"config-2");
        assert!(!dir.path().join("cd.iso.part").exists());
    }
}
