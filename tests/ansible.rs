//! Every playbook of the project's definitions passes `ansible-playbook --syntax-check` and
//! `ansible-lint` (default profile), with the tools of the project's .venv (`make test` makes it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::osc::venv_tool;

use std::path::PathBuf;
use std::process::Command;

fn playbooks() -> Vec<PathBuf> {
    let root = common::project_dir();
    let mut found = Vec::new();
    for kind in ["images", "os"] {
        for entry in std::fs::read_dir(root.join(kind)).unwrap() {
            let playbook = entry.unwrap().path().join("ansible/bootstrap.yml");
            if playbook.is_file() {
                found.push(playbook);
            }
        }
    }
    found.sort();
    assert!(
        found.len() >= 5,
        "expected the example playbooks, found {found:?}"
    );
    found
}

#[test]
fn every_playbook_passes_syntax_check() {
    let Some(ansible_playbook) = venv_tool("ansible-playbook") else {
        return;
    };
    for playbook in playbooks() {
        let out = Command::new(&ansible_playbook)
            .args(["--syntax-check", "-i", "localhost,"])
            .arg(&playbook)
            .env("ANSIBLE_NOCOLOR", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}:\n{}{}",
            playbook.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_playbook_passes_ansible_lint() {
    let Some(ansible_lint) = venv_tool("ansible-lint") else {
        return;
    };
    let out = Command::new(&ansible_lint)
        .args(["--offline", "--nocolor"])
        .args(playbooks())
        .current_dir(common::project_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ansible-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
