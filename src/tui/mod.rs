//! The console. For now: the catalog, each definition's details and validation problems, and
//! at start what crashed builds left in the cloud.
//!
//! Drawing is a pure function of `CatalogView`; the loop only reads keys and engine events and
//! redraws when something changed. Never calls a cloud: it sends commands to the engine.

pub mod leftovers;
pub mod theme;

use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use image_factory::catalog::{Catalog, Definition, Severity};
use image_factory::engine::events::Command;
use leftovers::LeftoversDialog;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use theme::Theme;

/// How long a key read waits before the loop looks again; there is nothing to animate yet.
const INPUT_POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct CatalogView<'c> {
    catalog: &'c Catalog,
    theme: Theme,
    /// Which cloud builds would go to, said plainly (the embedded sandbox above all).
    cloud_line: String,
    selected: usize,
    /// Shown over the catalog until the operator answers it.
    pub leftovers: Option<LeftoversDialog>,
    pub quit: bool,
}

impl<'c> CatalogView<'c> {
    pub fn new(catalog: &'c Catalog, theme: Theme, cloud_line: &str) -> Self {
        CatalogView {
            catalog,
            theme,
            cloud_line: cloud_line.to_string(),
            selected: 0,
            leftovers: None,
            quit: false,
        }
    }

    fn current(&self) -> Option<&'c Definition> {
        self.catalog.definitions.get(self.selected)
    }

    /// Returns true when the key changed something on screen, and the commands it leads to.
    pub fn on_key(&mut self, key: KeyEvent) -> (bool, Vec<Command>) {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return (true, Vec::new());
        }
        if let Some(dialog) = &mut self.leftovers {
            let commands = dialog.on_key(key);
            if dialog.closed {
                self.leftovers = None;
            }
            return (true, commands);
        }
        (self.on_catalog_key(key), Vec::new())
    }

    fn on_catalog_key(&mut self, key: KeyEvent) -> bool {
        let last = self.catalog.definitions.len().saturating_sub(1);
        let before = self.selected;
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = last,
            _ => {}
        }
        before != self.selected
    }

    pub fn draw(&self, frame: &mut Frame) {
        let [header, main, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let cloud_style =
            if self.cloud_line.contains("SANDBOX") || self.cloud_line.contains("NOT CONNECTED") {
                Style::new()
                    .fg(self.theme.warning)
                    .add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(self.theme.accent)
            };
        frame.render_widget(
            Paragraph::new(Line::styled(format!(" {}", self.cloud_line), cloud_style)),
            header,
        );
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)])
                .areas(main);
        self.draw_list(frame, left);
        self.draw_details(frame, right);
        let help = Line::from(vec![
            Span::styled(" ↑↓/jk", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" select  "),
            Span::styled("q", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" quit  "),
            Span::raw(self.catalog.root.display().to_string()),
        ]);
        frame.render_widget(Paragraph::new(help), footer);
        if let Some(dialog) = &self.leftovers {
            dialog.draw(frame, &self.theme);
        }
    }

    fn draw_list(&self, frame: &mut Frame, area: Rect) {
        let items: Vec<ListItem> = self
            .catalog
            .definitions
            .iter()
            .map(|d| {
                let (mark, color) = match worst(d) {
                    Some(Severity::Error) => ("✗", self.theme.error),
                    Some(Severity::Warning) => ("!", self.theme.warning),
                    None => ("✓", self.theme.ok),
                };
                ListItem::new(Line::from(vec![
                    Span::styled(format!("{mark} "), Style::new().fg(color)),
                    Span::styled(
                        format!("{:<6} ", d.kind.label()),
                        Style::new().fg(self.theme.muted),
                    ),
                    Span::raw(d.name.clone()),
                ]))
            })
            .collect();
        let title = format!(
            " Catalog: {} bundles, {} OS ",
            self.count(image_factory::catalog::Kind::Bundle),
            self.count(image_factory::catalog::Kind::Os)
        );
        let list = List::new(items)
            .block(Block::default().borders(Borders::ALL).title(title))
            .highlight_style(
                Style::new()
                    .fg(self.theme.selected_fg)
                    .bg(self.theme.selected_bg),
            );
        let mut state = ListState::default().with_selected(self.current().map(|_| self.selected));
        frame.render_stateful_widget(list, area, &mut state);
    }

    fn count(&self, kind: image_factory::catalog::Kind) -> usize {
        self.catalog
            .definitions
            .iter()
            .filter(|d| d.kind == kind)
            .count()
    }

    fn draw_details(&self, frame: &mut Frame, area: Rect) {
        let Some(def) = self.current() else {
            let text = Paragraph::new(format!(
                "No bundle or OS definition in {}.\nAdd images/<name>/build-vars.yml or os/<name>/build-vars.yml.",
                self.catalog.root.display()
            ))
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" Details "));
            frame.render_widget(text, area);
            return;
        };
        let mut lines = details(def, &self.theme);
        let problems: Vec<_> = self
            .catalog
            .problems
            .iter()
            .chain(def.problems.iter())
            .collect();
        if !problems.is_empty() {
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                "Problems",
                Style::new().add_modifier(Modifier::BOLD),
            ));
        }
        for p in problems {
            let color = if p.is_error() {
                self.theme.error
            } else {
                self.theme.warning
            };
            lines.push(Line::styled(p.to_string(), Style::new().fg(color)));
        }
        let title = format!(" {} {} ", def.kind.label(), def.name);
        let text = Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(title));
        frame.render_widget(text, area);
    }
}

fn worst(def: &Definition) -> Option<Severity> {
    def.problems.iter().map(|p| p.severity).max()
}

fn details(def: &Definition, theme: &Theme) -> Vec<Line<'static>> {
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<10} "), Style::new().fg(theme.muted)),
            Span::raw(v),
        ])
    };
    let mut lines = vec![field("file", def.file.display().to_string())];
    if let Some(spec) = &def.spec {
        let s = &spec.settings;
        lines.push(field("image", spec.image_name.clone()));
        lines.push(field("base", crate::cli::base_of(def)));
        lines.push(field("flavor", s.flavor.clone()));
        lines.push(field("ssh user", s.ssh_user.clone()));
        if !spec.properties.is_empty() {
            let props: Vec<String> = spec
                .properties
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            lines.push(field("properties", props.join(" ")));
        }
    }
    lines
}

/// The console's side of the engine: commands go out, events come back. The engine itself
/// starts once the cloud is connected; commands wait for it.
pub struct EngineLink {
    pub commands: tokio::sync::mpsc::UnboundedSender<Command>,
    pub events: std::sync::mpsc::Receiver<image_factory::engine::events::Event>,
    /// What the journals of stopped builds still hold, read in the background at start.
    pub leftovers:
        std::sync::mpsc::Receiver<Result<Vec<image_factory::engine::cleanup::Leftovers>, String>>,
}

/// Runs the console until the operator quits; the terminal is restored whatever happens.
/// `cloud_line` is updated by whoever connects to the cloud in the background: the screen shows
/// the catalog at once and the cloud's line when it is known.
pub fn run(
    catalog: &Catalog,
    theme: Theme,
    cloud_line: &std::sync::Mutex<String>,
    engine: EngineLink,
) -> std::io::Result<()> {
    let read_line = || cloud_line.lock().map(|l| l.clone()).unwrap_or_default();
    let mut terminal = ratatui::init();
    let mut view = CatalogView::new(catalog, theme, &read_line());
    let result = (|| -> std::io::Result<()> {
        terminal.draw(|f| view.draw(f))?;
        while !view.quit {
            let mut redraw = false;
            if event::poll(INPUT_POLL_INTERVAL)? {
                redraw = match event::read()? {
                    Event::Key(key) if key.kind == KeyEventKind::Press => {
                        let (changed, commands) = view.on_key(key);
                        for command in commands {
                            // The engine's side lives as long as the console.
                            let _ = engine.commands.send(command);
                        }
                        changed || view.quit
                    }
                    Event::Resize(..) => true,
                    _ => false,
                };
            }
            if let Ok(found) = engine.leftovers.try_recv() {
                view.leftovers = match found {
                    Ok(found) => LeftoversDialog::new(found),
                    Err(e) => Some(LeftoversDialog::unreadable(e)),
                };
                redraw |= view.leftovers.is_some();
            }
            while let Ok(event) = engine.events.try_recv() {
                if let Some(dialog) = &mut view.leftovers {
                    redraw |= dialog.on_event(&event);
                }
            }
            let line = read_line();
            if line != view.cloud_line {
                view.cloud_line = line;
                redraw = true;
            }
            if redraw && !view.quit {
                terminal.draw(|f| view.draw(f))?;
            }
        }
        Ok(())
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::{Terminal, backend::TestBackend};

    fn screen(view: &CatalogView, w: u16, h: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| view.draw(f)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn fixture_repo() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let write = |p: &str, t: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        };
        write(
            "images/bundle-web/build-vars.yml",
            "bundle:\n  name: bundle-web\n  img_base: debian-12\n  properties: {img_os: Debian}\n",
        );
        write(
            "images/bundle-typo/build-vars.yml",
            "bundle:\n  name: bundle-typo\n  img_base: debian-12\n  propreties: {a: b}\n",
        );
        write("os/debian-12/build-vars.yml", "bundle:\n  name: [oops]\n");
        let catalog = Catalog::load(dir.path()).unwrap();
        (dir, catalog)
    }

    #[test]
    fn lists_every_definition_with_its_status_and_problems() {
        let (_dir, catalog) = fixture_repo();
        let mut view = CatalogView::new(
            &catalog,
            Theme::default(),
            "cloud: the embedded SANDBOX at http://127.0.0.1:1",
        );
        let first = screen(&view, 100, 16);
        assert!(first.starts_with(" cloud: the embedded SANDBOX"), "{first}");
        assert!(first.contains("Catalog: 2 bundles, 1 OS"), "{first}");
        assert!(first.contains("✓ bundle bundle-web"), "{first}");
        assert!(first.contains("! bundle bundle-typo"), "{first}");
        assert!(first.contains("✗ os     debian-12"), "{first}");
        // The list is sorted by kind then name: bundle-typo first.
        assert!(first.contains("did you mean `properties`?"), "{first}");

        view.on_key(KeyEvent::from(KeyCode::End));
        let last = screen(&view, 100, 16);
        assert!(
            last.contains("os/debian-12/build-vars.yml:2:9: error"),
            "{last}"
        );

        view.on_key(KeyEvent::from(KeyCode::Char('q')));
        assert!(view.quit);
    }

    #[test]
    fn leftovers_of_a_crash_are_shown_first_and_deleted_by_the_engine_on_y() {
        use image_factory::engine::cleanup::find_leftovers;
        use image_factory::engine::events::{BuildId, Event};
        use image_factory::engine::journal::{Journal, ResourceKind};

        let (_dir, catalog) = fixture_repo();
        let data = tempfile::tempdir().unwrap();
        let id = BuildId {
            definition: "bundle-web".into(),
            started: "20261125T090500Z".into(),
            attempt: 1,
        };
        let build_dir = data.path().join("builds").join(id.to_string());
        std::fs::create_dir_all(&build_dir).unwrap();
        let mut journal = Journal::open(&build_dir).unwrap();
        journal
            .intend(ResourceKind::Keypair, "factory-key")
            .unwrap();
        journal
            .created(ResourceKind::Keypair, "factory-key", "factory-key")
            .unwrap();
        journal
            .intend(ResourceKind::Server, "factory-builder")
            .unwrap();
        journal
            .created(ResourceKind::Server, "factory-builder", "srv-1")
            .unwrap();
        drop(journal);

        let mut view = CatalogView::new(&catalog, Theme::default(), "cloud: test");
        view.leftovers = LeftoversDialog::new(find_leftovers(data.path()).unwrap());
        let asking = screen(&view, 120, 24);
        assert!(asking.contains("Leftovers in the cloud"), "{asking}");
        assert!(
            asking.contains("2 resource(s) left in the cloud by 1 build(s)"),
            "{asking}"
        );
        assert!(asking.contains("bundle-web-20261125T090500Z-1"), "{asking}");
        assert!(
            asking.contains("Server         factory-builder  srv-1"),
            "{asking}"
        );
        assert!(asking.contains("y delete them now"), "{asking}");

        // Catalog keys do not reach the catalog while the question is open.
        let (_, commands) = view.on_key(KeyEvent::from(KeyCode::Char('j')));
        assert!(commands.is_empty());
        let (_, commands) = view.on_key(KeyEvent::from(KeyCode::Char('y')));
        assert_eq!(commands, [Command::CleanUp(id.clone())]);
        assert!(screen(&view, 120, 24).contains("deleting…"));

        let dialog = view.leftovers.as_mut().unwrap();
        assert!(dialog.on_event(&Event::ResourceDeleted {
            id: id.clone(),
            kind: ResourceKind::Server,
            name: "factory-builder".into(),
            error: None,
        }));
        assert!(dialog.on_event(&Event::ResourceDeleted {
            id: id.clone(),
            kind: ResourceKind::Keypair,
            name: "factory-key".into(),
            error: Some("Compute: 503 Service Unavailable".into()),
        }));
        // The engine lists the failure again, as the clean-up's error says it: shown once.
        assert!(dialog.on_event(&Event::CleanupFinished {
            id: id.clone(),
            failures: vec![
                "cannot delete Keypair `factory-key`: Compute: 503 Service Unavailable".into(),
            ],
        }));
        let done = screen(&view, 120, 24);
        assert!(done.contains("deleted Server factory-builder"), "{done}");
        assert!(
            done.contains("FAILED Keypair factory-key (bundle-web): Compute: 503"),
            "{done}"
        );
        assert!(
            done.contains("1 deletion(s) failed: `factory cleanup` retries"),
            "{done}"
        );
        assert!(!done.contains("cannot delete"), "{done}");

        view.on_key(KeyEvent::from(KeyCode::Enter));
        assert!(view.leftovers.is_none());
        assert!(!screen(&view, 120, 24).contains("Leftovers"));
        assert!(!view.quit);
    }

    #[test]
    fn leftovers_can_be_left_for_later() {
        use image_factory::engine::cleanup::Leftovers;
        use image_factory::engine::journal::{Resource, ResourceKind, ResourceState};

        assert!(LeftoversDialog::new(Vec::new()).is_none());
        let (_dir, catalog) = fixture_repo();
        let mut view = CatalogView::new(&catalog, Theme::default(), "cloud: test");
        view.leftovers = LeftoversDialog::new(vec![Leftovers {
            build_dir: "/nonexistent".into(),
            build: "bundle-web-20261125T090500Z-1".into(),
            resources: vec![Resource {
                kind: ResourceKind::Keypair,
                name: "factory-key".into(),
                id: None,
                state: ResourceState::Intended,
            }],
        }]);
        let (_, commands) = view.on_key(KeyEvent::from(KeyCode::Char('n')));
        assert!(commands.is_empty());
        assert!(view.leftovers.is_none());
        assert!(!view.quit);
    }

    #[test]
    fn a_refused_clean_up_says_why() {
        use image_factory::engine::cleanup::Leftovers;
        use image_factory::engine::events::Event;
        use image_factory::engine::journal::{Resource, ResourceKind, ResourceState};

        let (_dir, catalog) = fixture_repo();
        let mut view = CatalogView::new(&catalog, Theme::default(), "cloud: test");
        let build = "bundle-web-20261125T090500Z-1";
        view.leftovers = LeftoversDialog::new(vec![Leftovers {
            build_dir: "/nonexistent".into(),
            build: build.into(),
            resources: vec![Resource {
                kind: ResourceKind::Server,
                name: "factory-builder".into(),
                id: Some("srv-1".into()),
                state: ResourceState::Created,
            }],
        }]);
        let (_, commands) = view.on_key(KeyEvent::from(KeyCode::Char('y')));
        let [Command::CleanUp(id)] = commands.as_slice() else {
            panic!("{commands:?}")
        };
        let refusal = format!("{build} is still running: cancel it first");
        view.leftovers
            .as_mut()
            .unwrap()
            .on_event(&Event::CleanupFinished {
                id: id.clone(),
                failures: vec![refusal.clone()],
            });
        let text = screen(&view, 120, 20);
        assert!(text.contains(&refusal), "{text}");
        assert!(text.contains("1 deletion(s) failed"), "{text}");
    }

    #[test]
    fn unreadable_journals_are_said_not_hidden() {
        let (_dir, catalog) = fixture_repo();
        let mut view = CatalogView::new(&catalog, Theme::default(), "cloud: test");
        view.leftovers = Some(LeftoversDialog::unreadable(
            "cannot read the resource journal /data/builds/x/journal.jsonl: permission denied"
                .into(),
        ));
        let text = screen(&view, 120, 20);
        assert!(
            text.contains("The build journals could not be read: cannot read the resource journal"),
            "{text}"
        );
        assert!(text.contains("`factory cleanup` lists them"), "{text}");
        // Long lines wrap; the dialog grows with them and still shows its key.
        let narrow = screen(&view, 60, 20);
        assert!(narrow.contains("Enter close"), "{narrow}");
        let (_, commands) = view.on_key(KeyEvent::from(KeyCode::Char('y')));
        assert!(commands.is_empty());
        view.on_key(KeyEvent::from(KeyCode::Enter));
        assert!(view.leftovers.is_none());
    }

    #[test]
    fn an_empty_repository_says_what_to_add() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        let catalog = Catalog::load(dir.path()).unwrap();
        let view = CatalogView::new(
            &catalog,
            Theme::default(),
            "cloud: the embedded SANDBOX at http://127.0.0.1:1",
        );
        let text = screen(&view, 80, 12);
        assert!(text.contains("No bundle or OS definition"), "{text}");
    }
}
