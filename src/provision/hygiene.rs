//! Image hygiene: what the builder must forget before it is snapshotted, so that every server
//! booted from the image starts as a fresh machine (the seed's clean-up, made complete).
//!
//! Runs as one shell script over SSH with sudo, after provisioning and before the stop. Paths are
//! prefixed by `$ROOT` (empty on a builder) so the script can be checked on a directory tree.

/// What the hygiene step removes; each part can be turned off by a definition.
#[derive(Clone, Debug, PartialEq)]
pub struct Hygiene {
    /// The build user's authorized_keys: the factory's temporary key must not stay in the image.
    pub authorized_keys: bool,
    /// cloud-init's state and logs, so it runs again on first boot (new host keys, new user keys).
    pub cloud_init: bool,
    pub shell_history: bool,
    /// Ansible's remote temporary files.
    pub ansible_tmp: bool,
    /// An empty /etc/machine-id is regenerated on first boot; a copied one clashes on DHCP.
    pub machine_id: bool,
    /// The builder's SSH host keys: cloud-init makes new ones on first boot.
    pub ssh_host_keys: bool,
}

impl Default for Hygiene {
    fn default() -> Self {
        Hygiene {
            authorized_keys: true,
            cloud_init: true,
            shell_history: true,
            ansible_tmp: true,
            machine_id: true,
            ssh_host_keys: true,
        }
    }
}

impl Hygiene {
    /// The script for a builder whose login user is `user`.
    pub fn script(&self, user: &str) -> String {
        // A user name from build-vars.yml is validated upstream, but quote it anyway.
        let user = user.replace('\'', "");
        let mut s = String::from(
            "set -eu\nR=\"${ROOT:-}\"\n\
             home=$(getent passwd '",
        );
        s.push_str(&user);
        s.push_str("' 2>/dev/null | cut -d: -f6 || true)\n[ -n \"$home\" ] || home=/home/");
        s.push_str(&user);
        s.push('\n');
        if self.cloud_init {
            s.push_str(
                "rm -rf \"$R\"/var/lib/cloud/instances \"$R\"/var/lib/cloud/instance \
                 \"$R\"/var/lib/cloud/data \"$R\"/var/lib/cloud/sem\n\
                 rm -f \"$R\"/var/log/cloud-init.log \"$R\"/var/log/cloud-init-output.log\n",
            );
        }
        if self.shell_history {
            s.push_str("rm -f \"$R\"/root/.bash_history \"$R$home\"/.bash_history\n");
        }
        if self.ansible_tmp {
            s.push_str("rm -rf \"$R\"/root/.ansible \"$R$home\"/.ansible \"$R\"/tmp/ansible-*\n");
        }
        if self.machine_id {
            s.push_str(
                "if [ -f \"$R\"/etc/machine-id ]; then : > \"$R\"/etc/machine-id; fi\n\
                 rm -f \"$R\"/var/lib/dbus/machine-id\n",
            );
        }
        if self.ssh_host_keys {
            s.push_str("rm -f \"$R\"/etc/ssh/ssh_host_*\n");
        }
        // Last: after this the factory can no longer log in, which is the point.
        if self.authorized_keys {
            s.push_str("rm -f \"$R$home\"/.ssh/authorized_keys \"$R\"/root/.ssh/authorized_keys\n");
        }
        s.push_str("sync\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn touch(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn the_script_leaves_a_fresh_machine_and_keeps_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for f in [
            "home/nobody-such/.ssh/authorized_keys",
            "home/nobody-such/.bash_history",
            "root/.bash_history",
            "root/.ansible/tmp/x",
            "var/lib/cloud/instances/i-1/obj.pkl",
            "var/lib/cloud/data/result.json",
            "var/log/cloud-init.log",
            "etc/ssh/ssh_host_ed25519_key",
            "var/lib/dbus/machine-id",
        ] {
            touch(r, f, "x");
        }
        touch(r, "etc/machine-id", "0123456789abcdef\n");
        touch(r, "etc/ssh/sshd_config", "keep\n");
        touch(r, "var/lib/cloud/scripts/per-instance/setup.sh", "keep\n");
        touch(r, "home/nobody-such/.ssh/config", "keep\n");

        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(Hygiene::default().script("nobody-such"))
            .env("ROOT", r)
            .status()
            .unwrap();
        assert!(status.success());
        for gone in [
            "home/nobody-such/.ssh/authorized_keys",
            "home/nobody-such/.bash_history",
            "root/.bash_history",
            "root/.ansible",
            "var/lib/cloud/instances",
            "var/lib/cloud/data",
            "var/log/cloud-init.log",
            "etc/ssh/ssh_host_ed25519_key",
            "var/lib/dbus/machine-id",
        ] {
            assert!(!r.join(gone).exists(), "{gone} survived");
        }
        assert_eq!(
            std::fs::read_to_string(r.join("etc/machine-id")).unwrap(),
            ""
        );
        for kept in [
            "etc/ssh/sshd_config",
            "var/lib/cloud/scripts/per-instance/setup.sh",
            "home/nobody-such/.ssh/config",
        ] {
            assert!(r.join(kept).exists(), "{kept} was removed");
        }
    }

    #[test]
    fn parts_can_be_turned_off() {
        let script = Hygiene {
            machine_id: false,
            ..Hygiene::default()
        }
        .script("debian");
        assert!(!script.contains("machine-id"));
        assert!(script.contains("authorized_keys"));
    }
}
