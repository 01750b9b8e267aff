//! The `factory` command: exit codes, output, help.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use assert_cmd::Command;
use common::{Repo, project_dir};
use predicates::prelude::*;

fn factory() -> Command {
    let mut cmd = Command::cargo_bin("factory").unwrap();
    cmd.env_remove("FACTORY_REPO");
    cmd
}

fn good_repo() -> Repo {
    let repo = Repo::new();
    repo.write(
        "images/web/build-vars.yml",
        "bundle: {name: web, img_base: debian-12}\n",
    );
    repo.write(
        "images/web/output/stack.yml.j2",
        "image: {{ result_img_id }}\nflavor: { get_param: f }\n",
    );
    repo.write(
        "os/debian-12/build-vars.yml",
        "bundle: {name: debian-12}\nsource: {debootstrap: {suite: bookworm}}\n",
    );
    repo
}

#[test]
fn list_shows_every_definition_and_finds_the_repository_from_a_subdirectory() {
    let repo = good_repo();
    factory()
        .current_dir(repo.path().join("images/web/output"))
        .arg("list")
        .assert()
        .success()
        .stdout(predicate::str::contains("bundle  web"))
        .stdout(predicate::str::contains(
            "os      debian-12  debian-12  source: debootstrap  ok",
        ));
}

#[test]
fn list_json_is_machine_readable() {
    let repo = good_repo();
    repo.write(
        "images/typo/build-vars.yml",
        "bundle: {name: typo, img_base: x, propreties: {}}\n",
    );
    let out = factory()
        .arg("--repo")
        .arg(repo.path())
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let defs = json["definitions"].as_array().unwrap();
    assert_eq!(defs.len(), 3);
    let typo = defs.iter().find(|d| d["name"] == "typo").unwrap();
    assert_eq!(typo["kind"], "bundle");
    assert_eq!(typo["problems"][0]["severity"], "warning");
    assert_eq!(typo["problems"][0]["line"], 1);
    assert_eq!(typo["problems"][0]["file"], "images/typo/build-vars.yml");
    let web = defs.iter().find(|d| d["name"] == "web").unwrap();
    assert_eq!(web["spec"]["settings"]["timeouts"]["ssh"], "10m");
    assert_eq!(
        web["spec"]["settings"]["image_name"],
        "{name}-%Y-%m-%d-%H%M"
    );
}

#[test]
fn validate_exit_codes_follow_errors_not_warnings() {
    let repo = good_repo();
    factory()
        .arg("--repo")
        .arg(repo.path())
        .arg("validate")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "2 definitions checked: 0 with errors; 0 errors, 0 warnings",
        ));

    repo.write(
        "images/typo/build-vars.yml",
        "bundle: {name: typo, img_base: x}\nflavour: m1\n",
    );
    factory().arg("--repo").arg(repo.path()).arg("validate").assert().success()
        .stdout(predicate::str::contains("images/typo/build-vars.yml:2:1: warning: unknown key `flavour`: did you mean `flavor`?"));
    factory()
        .arg("--repo")
        .arg(repo.path())
        .args(["validate", "--deny-warnings"])
        .assert()
        .code(1);

    repo.write("images/broken/build-vars.yml", "bundle: {name: broken}\n");
    factory()
        .arg("--repo")
        .arg(repo.path())
        .arg("validate")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "images/broken/build-vars.yml:1:9: error: missing `bundle.img_base`",
        ));
    // Only the named definitions are checked.
    factory()
        .arg("--repo")
        .arg(repo.path())
        .args(["validate", "web", "debian-12"])
        .assert()
        .success();
    factory()
        .arg("--repo")
        .arg(repo.path())
        .args(["validate", "wbe"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no bundle or OS definition named `wbe`")
                .and(predicate::str::contains("did you mean `web`?")),
        );
}

#[test]
fn no_repository_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    factory()
        .current_dir(empty.path())
        .arg("list")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no factory repository")
                .and(predicate::str::contains("--repo DIR")),
        );
    factory()
        .arg("--repo")
        .arg(empty.path())
        .arg("list")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("holds neither images/ nor os/"));
}

#[test]
fn render_writes_outputs_and_fails_with_file_and_line() {
    let repo = good_repo();
    let out = tempfile::tempdir().unwrap();
    factory()
        .arg("--repo")
        .arg(repo.path())
        .args(["render", "web", "--image-id", "abc-123", "--out"])
        .arg(out.path())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "images/web/output/stack.yml.j2 ->",
        ));
    assert_eq!(
        std::fs::read_to_string(out.path().join("stack.yml")).unwrap(),
        "image: abc-123\nflavor: { get_param: f }\n"
    );
    // Default place: images/target/<name>/output, as the seed's factory.
    factory()
        .arg("--repo")
        .arg(repo.path())
        .args(["render", "web", "--image-id", "abc-123"])
        .assert()
        .success();
    assert!(
        repo.path()
            .join("images/target/web/output/stack.yml")
            .is_file()
    );
    // And the rendered outputs are not mistaken for a bundle.
    factory()
        .arg("--repo")
        .arg(repo.path())
        .arg("validate")
        .assert()
        .success()
        .stdout(predicate::str::contains("2 definitions checked"));

    repo.write(
        "images/web/output/stack.yml.j2",
        "image: {{ result_img }}\n",
    );
    factory()
        .arg("--repo")
        .arg(repo.path())
        .args(["render", "web", "--image-id", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "images/web/output/stack.yml.j2:1: undefined variable `result_img`",
        ));
    factory()
        .arg("--repo")
        .arg(repo.path())
        .args(["render", "web"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--image-id"));
}

#[test]
fn every_help_explains_its_command() {
    factory()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("--repo").and(predicate::str::contains("Examples:")));
    for (cmd, needle) in [
        ("list", "--json"),
        ("validate", "Exit status"),
        ("render", "result_img_id"),
        ("completions", "bash"),
    ] {
        factory()
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains(needle));
    }
}

#[test]
fn completions_are_generated() {
    factory()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("factory").and(predicate::str::contains("validate")));
    factory().args(["completions", "zsh"]).assert().success();
}

#[test]
fn the_projects_own_repository_validates() {
    factory()
        .arg("--repo")
        .arg(project_dir())
        .arg("validate")
        .assert()
        .success();
}

#[test]
fn history_and_logs_read_what_builds_recorded() {
    use image_factory::engine::events::{BuildId, BuildResult, Event, LogLine, Phase, Stream};
    use image_factory::history::History;
    use std::time::Duration;

    let data = tempfile::tempdir().unwrap();
    let history = History::new(data.path());
    let record = |def: &str, started: &str, result: Option<BuildResult>| {
        let id = BuildId {
            definition: def.into(),
            started: started.into(),
            attempt: 1,
        };
        let mut r = history.recorder(&id).unwrap();
        r.record(&Event::StepStarted {
            id: id.clone(),
            phase: Phase::Provision,
        })
        .unwrap();
        r.record(&Event::LogLines {
            id: id.clone(),
            lines: vec![LogLine {
                stream: Stream::Stdout,
                text: format!("TASK [{def}]"),
            }],
        })
        .unwrap();
        if let Some(result) = result {
            r.record(&Event::BuildFinished {
                id,
                result,
                duration: Duration::from_secs(125),
                timing: Default::default(),
            })
            .unwrap();
        }
    };
    record(
        "web",
        "20261125T090000Z",
        Some(BuildResult::Succeeded {
            image_id: "i-1".into(),
            image_name: "web-2026".into(),
        }),
    );
    record(
        "db",
        "20261125T100000Z",
        Some(BuildResult::Failed {
            phase: Phase::Provision,
            error: "task `Start postgres` failed".into(),
            kept: None,
        }),
    );
    record("web", "20261125T110000Z", None);

    let run = |args: &[&str]| {
        factory()
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .assert()
    };
    run(&["history"]).success().stdout(
        predicate::str::contains("web-20261125T110000Z-1  interrupted")
            .and(predicate::str::contains(
                "stopped during provision with Ansible",
            ))
            .and(predicate::str::contains("db-20261125T100000Z-1  failed"))
            .and(predicate::str::contains(
                "2m 5s  in provision with Ansible: task `Start postgres` failed",
            ))
            .and(predicate::str::contains("web-2026 (i-1)")),
    );
    run(&["history", "--failed"])
        .success()
        .stdout(predicate::str::contains("succeeded").not());
    run(&["history", "db"])
        .success()
        .stdout(predicate::str::contains("web-").not());
    run(&["logs", "db"])
        .success()
        .stdout(predicate::str::contains(
            "==> provision with Ansible\nTASK [db]\nFAILED in provision with Ansible",
        ));
    run(&["logs", "nope"])
        .code(2)
        .stderr(predicate::str::contains("no build `nope`"));
}
