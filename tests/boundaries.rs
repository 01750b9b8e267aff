//! The engine side never knows the screen (DESIGN.md): library modules must not reach ratatui,
//! crossterm or the tui module.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

const SCREEN_CRATES: [&str; 3] = ["ratatui", "crossterm", "crate::tui"];
const SCREEN_SIDE: [&str; 3] = ["tui", "cli", "main.rs"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn library_modules_do_not_touch_the_terminal() {
    let src = common::project_dir().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offenders = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if SCREEN_SIDE.contains(&top.as_ref()) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for word in SCREEN_CRATES {
            if text.contains(word) {
                offenders.push(format!("{} uses {word}", rel.display()));
            }
        }
    }
    assert!(files.len() > 5);
    assert!(offenders.is_empty(), "{offenders:#?}");
}
