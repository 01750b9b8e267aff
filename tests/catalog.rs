//! The catalog against real files: the seed's definitions unchanged, our format, the broken corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Repo, compat_or_skip, copy_tree, project_dir};
use image_factory::catalog::{Catalog, Checksum, Kind, RetentionAction, Severity, Visibility};

#[test]
fn the_seed_factory_loads_unchanged_without_errors() {
    let Some(dir) = compat_or_skip("the_seed_factory_loads_unchanged_without_errors") else {
        return;
    };
    let catalog = Catalog::load(&dir).unwrap();
    let errors: Vec<String> = catalog
        .all_problems()
        .filter(|p| p.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let bundles = catalog
        .definitions
        .iter()
        .filter(|d| d.kind == Kind::Bundle)
        .count();
    let oses = catalog
        .definitions
        .iter()
        .filter(|d| d.kind == Kind::Os)
        .count();
    assert_eq!((bundles, oses), (21, 6));

    let lamp = catalog
        .get("bundle-trusty-lamp")
        .unwrap()
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(lamp.image_name, "bundle-trusty-lamp");
    assert_eq!(
        lamp.img_base.as_deref(),
        Some("70a9c910-dd99-4065-bce9-11e89bc479fe")
    );
    assert_eq!(lamp.properties["cw_bundle"], "LAMP");
    assert_eq!(lamp.properties.len(), 3);

    // The directory names the definition; bundle.name names the image.
    let webmail = catalog.get("bundle-trusty-webmail-antispam").unwrap();
    assert_eq!(
        webmail.spec.as_ref().unwrap().image_name,
        "bundle-trusty-webmail"
    );

    // The seed's OS templates: display names, placeholders, packer_file reported as unused.
    let jessie = catalog.get("debian-jessie").unwrap();
    assert_eq!(
        jessie.file.to_str(),
        Some("os/debian-jessie/build-vars.template.yml")
    );
    let spec = jessie.spec.as_ref().unwrap();
    assert_eq!(spec.image_name, "Debian Jessie");
    assert_eq!(
        spec.img_base, None,
        "TMP_IMAGE_ID is the seed's placeholder, not an image"
    );
    assert_eq!(spec.properties["cw_os"], "Debian");
    assert!(
        jessie
            .problems
            .iter()
            .any(|p| p.severity == Severity::Warning
                && p.message.contains("`packer_file` is accepted and unused")),
        "{:#?}",
        jessie.problems
    );
    let mongodb = catalog.get("bundle-centos-mongodb").unwrap();
    assert_eq!(mongodb.problems.len(), 1, "{:#?}", mongodb.problems);
    assert_eq!(mongodb.problems[0].pos.unwrap().line, 10);
}

#[test]
fn the_projects_own_definitions_validate_cleanly() {
    let catalog = Catalog::load(&project_dir()).unwrap();
    let problems: Vec<String> = catalog.all_problems().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    for name in [
        "debian-12",
        "ubuntu-24.04",
        "bundle-bookworm-lamp",
        "bundle-docker-host",
        "bundle-postgresql",
    ] {
        assert!(
            catalog.get(name).is_some_and(|d| d.spec.is_some()),
            "{name} missing"
        );
    }
    let debian = catalog.get("debian-12").unwrap().spec.as_ref().unwrap();
    let source = debian.source.as_ref().unwrap();
    assert!(source.upstream.is_some() && source.debootstrap.is_some());
}

#[test]
fn every_broken_fixture_produces_exactly_its_expected_problems() {
    let repo = tempfile::tempdir().unwrap();
    copy_tree(&project_dir().join("tests/fixtures/broken"), repo.path());
    let catalog = Catalog::load(repo.path()).unwrap();
    let mut checked = 0;
    for def in &catalog.definitions {
        let expected = std::fs::read_to_string(def.dir.join("expected.txt")).unwrap();
        let actual: String = def.problems.iter().map(|p| format!("{p}\n")).collect();
        assert_eq!(
            actual,
            expected,
            "problems of {}/{}",
            def.kind.dir(),
            def.name
        );
        checked += 1;
    }
    assert!(checked >= 29, "only {checked} fixtures");
    // Broken neighbours never stop a good definition from loading.
    let fine = catalog.get("fine").unwrap();
    assert!(fine.problems.is_empty() && fine.spec.is_some());
}

#[test]
fn symlinks_that_leave_the_repository_are_refused() {
    let outside = Repo::new();
    outside.write(
        "images/evil/build-vars.yml",
        "bundle: {name: evil, img_base: x}\n",
    );
    outside.write("secret.yml", "bundle: {name: secret, img_base: x}\n");
    let repo = Repo::new();
    repo.write(
        "images/ok/build-vars.yml",
        "bundle: {name: ok, img_base: x}\n",
    );
    std::fs::create_dir_all(repo.path().join("images/linked-file")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.yml"),
        repo.path().join("images/linked-file/build-vars.yml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("images/evil"),
        repo.path().join("images/linked-dir"),
    )
    .unwrap();
    // A symlink that stays inside is fine.
    std::os::unix::fs::symlink(
        repo.path().join("images/ok"),
        repo.path().join("images/alias"),
    )
    .unwrap();

    let catalog = Catalog::load(repo.path()).unwrap();
    for name in ["linked-file", "linked-dir"] {
        let def = catalog.get(name).unwrap();
        assert!(def.spec.is_none(), "{name} was read");
        assert!(
            def.problems
                .iter()
                .any(|p| p.is_error() && p.message.contains("leaves the repository")),
            "{name}: {:#?}",
            def.problems
        );
    }
    assert!(catalog.get("alias").unwrap().spec.is_some());
    assert!(catalog.get("ok").unwrap().spec.is_some());
}

#[test]
fn defaults_layer_builtin_then_factory_yml_then_the_definition() {
    let repo = Repo::new();
    repo.write(
        "factory.yml",
        "defaults:\n  flavor: b2-7\n  networks: [ext-net]\n  ssh_user: admin\n  timeouts: {ssh: 20m}\n  publish: {visibility: shared}\n",
    );
    repo.write(
        "images/web/build-vars.yml",
        "bundle: {name: web, img_base: debian-12}\nssh_user: debian\ntimeouts: {provision: 2h}\n",
    );
    repo.write(
        "os/debian-12/build-vars.yml",
        "bundle: {name: debian-12}\nflavor: m1.large\nretention: {keep: 5, action: hide}\nsource:\n  url: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2\n  checksum: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF\n",
    );
    let catalog = Catalog::load(repo.path()).unwrap();
    assert_eq!(catalog.all_problems().count(), 0, "{:#?}", catalog.problems);
    let web = &catalog.get("web").unwrap().spec.as_ref().unwrap().settings;
    assert_eq!(web.flavor, "b2-7"); // factory.yml
    assert_eq!(web.networks, ["ext-net"]);
    assert_eq!(web.ssh_user, "debian"); // the definition wins
    assert_eq!(web.timeouts.ssh, Duration::from_secs(20 * 60));
    assert_eq!(web.timeouts.provision, Duration::from_secs(2 * 3600));
    assert_eq!(web.timeouts.boot, Duration::from_secs(15 * 60)); // built in
    assert_eq!(web.publish.visibility, Visibility::Shared);
    assert_eq!(web.image_name, "{name}-%Y-%m-%d-%H%M");

    let os = catalog.get("debian-12").unwrap().spec.as_ref().unwrap();
    assert_eq!(os.settings.flavor, "m1.large");
    assert_eq!(os.settings.retention.keep, 5);
    assert_eq!(os.settings.retention.action, RetentionAction::Hide);
    let upstream = os.source.as_ref().unwrap().upstream.as_ref().unwrap();
    assert_eq!(upstream.disk_format, "qcow2");
    assert_eq!(
        upstream.checksum,
        Checksum::Sha256("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into())
    );
}

#[test]
fn the_seeds_top_level_keys_map_onto_our_settings() {
    let repo = Repo::new();
    repo.write(
        "os/jessie/build-vars.yml",
        "bundle_target_name: B_TARGET_NAME\npacker_file: build.packer.json\nvm_flavor: n1.cw.standard-1\nfinal_glance_options: --min-disk 20 --min-ram=1024 --public\nbundle:\n  name: Debian Jessie\n  img_base: TMP_IMAGE_ID\n  path: debian-jessie\n",
    );
    let catalog = Catalog::load(repo.path()).unwrap();
    let def = catalog.get("jessie").unwrap();
    let s = &def.spec.as_ref().unwrap().settings;
    assert_eq!(s.flavor, "n1.cw.standard-1");
    assert_eq!(s.min_disk_gib, Some(20));
    assert_eq!(s.min_ram_mib, Some(1024));
    assert_eq!(s.publish.visibility, Visibility::Public);
    let warnings: Vec<&str> = def.problems.iter().map(|p| p.message.as_str()).collect();
    assert!(
        warnings.iter().any(|m| m.contains("packer_file")),
        "{warnings:?}"
    );
    assert!(
        def.problems.iter().all(|p| !p.is_error()),
        "{:#?}",
        def.problems
    );
}

#[test]
fn names_must_be_unique_across_images_and_os() {
    let repo = Repo::new();
    repo.write(
        "images/base/build-vars.yml",
        "bundle: {name: a, img_base: x}\n",
    );
    repo.write(
        "os/base/build-vars.yml",
        "bundle: {name: b}\nsource: {debootstrap: {suite: bookworm}}\n",
    );
    let catalog = Catalog::load(repo.path()).unwrap();
    assert_eq!(catalog.definitions.len(), 2);
    assert!(catalog.definitions.iter().all(|d| d.has_errors()));
}

#[test]
fn a_broken_factory_yml_is_reported_and_builtin_defaults_apply() {
    let repo = Repo::new();
    repo.write("factory.yml", "defaults:\n  flavor: [x\n");
    repo.write(
        "images/web/build-vars.yml",
        "bundle: {name: web, img_base: x}\n",
    );
    let catalog = Catalog::load(repo.path()).unwrap();
    assert_eq!(catalog.problems.len(), 1);
    assert!(
        catalog.problems[0].to_string().starts_with("factory.yml:"),
        "{}",
        catalog.problems[0]
    );
    assert_eq!(
        catalog
            .get("web")
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .settings
            .flavor,
        "m1.small"
    );

    repo.write("factory.yml", "default:\n  flavor: x\n");
    let catalog = Catalog::load(repo.path()).unwrap();
    assert_eq!(
        catalog.problems[0].to_string(),
        "factory.yml:1:1: warning: unknown key `default`: did you mean `defaults`?"
    );
}
