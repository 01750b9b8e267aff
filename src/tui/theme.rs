//! Console colours, from `themes/<name>.toml` (the repository's own first, then the built-in ones).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::Color;
use serde::Deserialize;

/// Themes shipped inside the binary, so the console has colours outside a factory checkout too.
const BUILTIN: [(&str, &str); 2] = [
    ("default", include_str!("../../themes/default.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub ok: Color,
    pub warning: Color,
    pub error: Color,
    pub muted: Color,
    pub accent: Color,
    pub selected_fg: Color,
    pub selected_bg: Color,
}

impl Default for Theme {
    fn default() -> Self {
        Theme {
            ok: Color::Green,
            warning: Color::Yellow,
            error: Color::Red,
            muted: Color::DarkGray,
            accent: Color::Cyan,
            selected_fg: Color::Black,
            selected_bg: Color::Cyan,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    ok: Option<String>,
    warning: Option<String>,
    error: Option<String>,
    muted: Option<String>,
    accent: Option<String>,
    selected_fg: Option<String>,
    selected_bg: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("no theme `{name}`: looked for {path} and the built-in themes ({builtin})")]
    NotFound {
        name: String,
        path: PathBuf,
        builtin: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

impl Theme {
    /// `themes/<name>.toml` of the repository, else the built-in theme of that name.
    pub fn load(repo_root: &Path, name: &str) -> Result<Theme, ThemeError> {
        let path = repo_root.join("themes").join(format!("{name}.toml"));
        if !name.contains(['/', '\\']) && path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| ThemeError::Invalid {
                file: path.display().to_string(),
                message: e.to_string(),
            })?;
            return Theme::parse(&path.display().to_string(), &text);
        }
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Theme::parse(&format!("built-in theme {n}"), text),
            None => Err(ThemeError::NotFound {
                name: name.to_string(),
                path,
                builtin: BUILTIN.map(|(n, _)| n).join(", "),
            }),
        }
    }

    pub fn parse(file: &str, text: &str) -> Result<Theme, ThemeError> {
        let invalid = |message: String| ThemeError::Invalid {
            file: file.to_string(),
            message,
        };
        let parsed: ThemeFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut theme = Theme::default();
        let slots = [
            ("ok", parsed.ok, &mut theme.ok),
            ("warning", parsed.warning, &mut theme.warning),
            ("error", parsed.error, &mut theme.error),
            ("muted", parsed.muted, &mut theme.muted),
            ("accent", parsed.accent, &mut theme.accent),
            ("selected_fg", parsed.selected_fg, &mut theme.selected_fg),
            ("selected_bg", parsed.selected_bg, &mut theme.selected_bg),
        ];
        for (key, value, slot) in slots {
            if let Some(value) = value {
                *slot = Color::from_str(&value).map_err(|_| {
                    invalid(format!(
                        "`{key} = \"{value}\"` is not a colour: use a name such as dark_gray, \
                         an index 0-255, or #rrggbb"
                    ))
                })?;
            }
        }
        Ok(theme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_default_file_matches_the_compiled_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Theme::load(dir.path(), "default").unwrap(),
            Theme::default()
        );
        let hc = Theme::load(dir.path(), "high-contrast").unwrap();
        assert_eq!(hc.ok, Color::Rgb(0, 0x64, 0));
    }

    #[test]
    fn a_repository_theme_wins_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("themes")).unwrap();
        std::fs::write(dir.path().join("themes/default.toml"), "ok = \"blue\"\n").unwrap();
        assert_eq!(Theme::load(dir.path(), "default").unwrap().ok, Color::Blue);

        std::fs::write(dir.path().join("themes/bad.toml"), "error = \"reddish\"\n").unwrap();
        let err = Theme::load(dir.path(), "bad").unwrap_err().to_string();
        assert!(err.ends_with("themes/bad.toml: `error = \"reddish\"` is not a colour: use a name such as dark_gray, an index 0-255, or #rrggbb"), "{err}");

        std::fs::write(dir.path().join("themes/typo.toml"), "eror = \"red\"\n").unwrap();
        let err = Theme::load(dir.path(), "typo").unwrap_err().to_string();
        assert!(err.contains("unknown field `eror`"), "{err}");

        let err = Theme::load(dir.path(), "nope").unwrap_err().to_string();
        assert!(
            err.contains("built-in themes (default, high-contrast)"),
            "{err}"
        );
    }
}
