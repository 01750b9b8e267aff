//! Rendering output templates: the seed's stacks unchanged, strictness, HEAT passthrough, atomicity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Repo, compat_or_skip};
use image_factory::catalog::Catalog;
use image_factory::render::{BuildInfo, RenderError, render_definition};

fn build() -> BuildInfo {
    BuildInfo {
        id: "b-42".into(),
        date: "2026-11-25T09:05:00Z".into(),
        image_name: "web-2026-11-25-0905".into(),
    }
}

#[test]
fn every_seed_template_renders_to_itself_with_the_image_id() {
    let Some(dir) = compat_or_skip("every_seed_template_renders_to_itself_with_the_image_id")
    else {
        return;
    };
    let catalog = Catalog::load(&dir).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut rendered = 0;
    for def in &catalog.definitions {
        let target = out.path().join(&def.name);
        let done = render_definition(
            &catalog.root,
            def,
            "0b4e1a9c-1111-2222-3333-444455556666",
            &build(),
            Some(&target),
        )
        .unwrap();
        for r in done {
            let source = std::fs::read_to_string(catalog.root.join(&r.template)).unwrap();
            let expected = source.replace(
                "{{ result_img_id }}",
                "0b4e1a9c-1111-2222-3333-444455556666",
            );
            let actual = std::fs::read_to_string(&r.output).unwrap();
            assert_eq!(actual, expected, "{}", r.template.display());
            assert!(!r.output.to_string_lossy().ends_with(".j2"));
            rendered += 1;
        }
    }
    assert_eq!(rendered, 17, "the seed has 17 output templates");
}

fn web_repo(template: &str) -> Repo {
    let repo = Repo::new();
    repo.write(
        "images/web/build-vars.yml",
        "bundle:\n  name: web\n  img_base: debian-12\n  properties: {img_os: Debian}\nflavor: m1.small\n",
    );
    repo.write("images/web/output/stack.heat.yml.j2", template);
    repo
}

fn render(repo: &Repo) -> Result<Vec<image_factory::render::Rendered>, RenderError> {
    let catalog = Catalog::load(repo.path()).unwrap();
    render_definition(
        &catalog.root,
        catalog.get("web").unwrap(),
        "img-123",
        &build(),
        None,
    )
}

#[test]
fn heat_syntax_passes_through_and_the_context_is_complete() {
    let template = "\
heat_template_version: 2018-08-31
# {{ bundle.name }} built by {{ build.id }} on {{ build.date }} as {{ build.image_name }}
resources:
  server:
    type: OS::Nova::Server
    properties:
      image: {{ result_img_id }}
      flavor: { get_param: flavor_name }
      user_data:
        str_replace:
          template: |
            #!/bin/sh
            echo $greeting$ > /tmp/motd
          params:
            $greeting$: { get_param: greeting }
outputs:
  os: {value: {{ bundle.properties.img_os }} on {{ flavor }}}
{% if bundle.img_base == 'debian-12' %}
  base: {value: debian}
{% endif %}
";
    let repo = web_repo(template);
    let done = render(&repo).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].output,
        Catalog::load(repo.path())
            .unwrap()
            .root
            .join("images/target/web/output/stack.heat.yml")
    );
    let text = std::fs::read_to_string(&done[0].output).unwrap();
    assert!(
        text.contains("# web built by b-42 on 2026-11-25T09:05:00Z as web-2026-11-25-0905\n"),
        "{text}"
    );
    assert!(text.contains("image: img-123\n"));
    assert!(text.contains("flavor: { get_param: flavor_name }\n"));
    assert!(text.contains("echo $greeting$ > /tmp/motd\n"));
    assert!(text.contains("$greeting$: { get_param: greeting }\n"));
    assert!(text.contains("os: {value: Debian on m1.small}\n"));
    // trim_blocks, as the seed's Ansible template step: no blank line left by the block tags.
    assert!(
        text.ends_with("outputs:\n  os: {value: Debian on m1.small}\n  base: {value: debian}\n"),
        "{text:?}"
    );
}

#[test]
fn an_undefined_variable_names_the_file_the_line_and_the_near_name() {
    let repo = web_repo("a: 1\nb: 2\nimage: {{ result_image_id }}\n");
    let err = render(&repo).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("images/web/output/stack.heat.yml.j2:3: undefined variable `result_image_id` (did you mean `result_img_id`?)"),
        "{text}"
    );
    assert!(
        !repo
            .path()
            .join("images/target/web/output/stack.heat.yml")
            .exists()
    );

    let repo = web_repo("a: {{ bundle.propertiez.x }}\n");
    let text = render(&repo).unwrap_err().to_string();
    assert!(
        text.starts_with("images/web/output/stack.heat.yml.j2:1: "),
        "{text}"
    );
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let repo = web_repo("a: 1\n{% if %}\n");
    let text = render(&repo).unwrap_err().to_string();
    assert!(
        text.starts_with("images/web/output/stack.heat.yml.j2:2: "),
        "{text}"
    );
}

#[test]
fn a_failed_render_leaves_previous_outputs_whole_and_no_temporary_files() {
    let repo = web_repo("image: {{ result_img_id }}\n");
    repo.write(
        "images/web/output/nested/zz-extra.yml.j2",
        "extra: {{ build.id }}\n",
    );
    let done = render(&repo).unwrap();
    assert_eq!(done.len(), 2);
    let out_dir = repo.path().join("images/target/web/output");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("nested/zz-extra.yml")).unwrap(),
        "extra: b-42\n"
    );

    // The second template now fails: nothing is written, not even the first, which renders fine.
    repo.write(
        "images/web/output/stack.heat.yml.j2",
        "image: {{ result_img_id }} v2\n",
    );
    repo.write(
        "images/web/output/nested/zz-extra.yml.j2",
        "extra: {{ nope }}\n",
    );
    render(&repo).unwrap_err();
    assert_eq!(
        std::fs::read_to_string(out_dir.join("stack.heat.yml")).unwrap(),
        "image: img-123\n"
    );
    let leftovers: Vec<_> = walk(&out_dir);
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_template_symlinked_out_of_the_repository_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.j2"), "secret\n").unwrap();
    let repo = web_repo("a: 1\n");
    std::os::unix::fs::symlink(
        outside.path().join("x.j2"),
        repo.path().join("images/web/output/x.j2"),
    )
    .unwrap();
    let text = render(&repo).unwrap_err().to_string();
    assert!(
        text.contains("images/web/output/x.j2: is a symbolic link that leaves the repository"),
        "{text}"
    );
}
