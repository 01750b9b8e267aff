//! At start, what crashed or kept builds left in the cloud, as their journals say: the operator
//! deletes it with one key (the engine does the deleting) or leaves it for `factory cleanup`.

use crossterm::event::{KeyCode, KeyEvent};
use image_factory::engine::cleanup::Leftovers;
use image_factory::engine::events::{BuildId, Command, Event};
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::theme::Theme;

#[derive(Debug, PartialEq)]
enum Stage {
    Asking,
    Cleaning,
    Done,
    /// The journals could not be read: what is left is not known.
    Unreadable(String),
}

pub struct LeftoversDialog {
    leftovers: Vec<Leftovers>,
    stage: Stage,
    /// Builds asked to be cleaned whose `CleanupFinished` has not come yet, with the failed
    /// deletions already shown for each (`CleanupFinished` lists them again).
    pending: Vec<(BuildId, usize)>,
    progress: Vec<(bool, String)>,
    failures: usize,
    pub closed: bool,
}

impl LeftoversDialog {
    /// None when nothing is left anywhere.
    pub fn new(leftovers: Vec<Leftovers>) -> Option<LeftoversDialog> {
        (!leftovers.is_empty()).then(|| LeftoversDialog::at(leftovers, Stage::Asking))
    }

    /// Says that the journals could not be read (the operator must know leftovers may exist).
    pub fn unreadable(error: String) -> LeftoversDialog {
        LeftoversDialog::at(Vec::new(), Stage::Unreadable(error))
    }

    fn at(leftovers: Vec<Leftovers>, stage: Stage) -> LeftoversDialog {
        LeftoversDialog {
            leftovers,
            stage,
            pending: Vec::new(),
            progress: Vec::new(),
            failures: 0,
            closed: false,
        }
    }

    fn resource_count(&self) -> usize {
        self.leftovers.iter().map(|l| l.resources.len()).sum()
    }

    /// Handles a key; returns the commands for the engine it leads to.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        match (&self.stage, key.code) {
            (Stage::Asking, KeyCode::Char('y' | 'Y')) => {
                self.stage = Stage::Cleaning;
                let mut commands = Vec::new();
                for l in &self.leftovers {
                    match l.id() {
                        Some(id) => {
                            self.pending.push((id.clone(), 0));
                            commands.push(Command::CleanUp(id));
                        }
                        None => {
                            self.failures += 1;
                            self.progress
                                .push((false, format!("{}: not a build directory", l.build)));
                        }
                    }
                }
                if self.pending.is_empty() {
                    self.stage = Stage::Done;
                }
                commands
            }
            (Stage::Asking, KeyCode::Char('n' | 'N') | KeyCode::Esc)
            | (
                Stage::Done | Stage::Unreadable(_),
                KeyCode::Enter | KeyCode::Esc | KeyCode::Char('q'),
            ) => {
                self.closed = true;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Takes the engine's report of the clean-up; returns whether the dialog changed.
    pub fn on_event(&mut self, event: &Event) -> bool {
        let Some(shown) = self
            .pending
            .iter_mut()
            .find(|(id, _)| id == event.build_id())
            .map(|(_, shown)| shown)
        else {
            return false;
        };
        match event {
            Event::ResourceDeleted {
                id,
                kind,
                name,
                error,
            } => {
                let text = match error {
                    None => format!("deleted {kind:?} {name}"),
                    Some(e) => {
                        *shown += 1;
                        format!("FAILED {kind:?} {name} ({}): {e}", id.definition)
                    }
                };
                self.progress.push((error.is_none(), text));
            }
            Event::CleanupFinished { id, failures } => {
                // Deletions come first, in order; what follows them (a refusal, an unreadable
                // journal) was not shown yet.
                let already = *shown;
                for f in failures.iter().skip(already) {
                    self.progress.push((false, f.clone()));
                }
                self.failures += failures.len();
                self.pending.retain(|(p, _)| p != id);
                if self.pending.is_empty() {
                    self.stage = Stage::Done;
                }
            }
            _ => return false,
        }
        true
    }

    pub fn draw(&self, frame: &mut Frame, theme: &Theme) {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        if let Stage::Unreadable(error) = &self.stage {
            let lines = vec![
                Line::styled(
                    format!("The build journals could not be read: {error}"),
                    Style::new().fg(theme.error),
                ),
                Line::raw(
                    "Builds may have left resources in the cloud: `factory cleanup` lists them.",
                ),
                Line::from(vec![Span::styled("Enter", bold), Span::raw(" close")]),
            ];
            self.draw_box(frame, theme, lines);
            return;
        }
        let mut lines = vec![Line::styled(
            format!(
                "{} resource(s) left in the cloud by {} build(s) that did not clean up \
                 (a crash, or kept for triage):",
                self.resource_count(),
                self.leftovers.len()
            ),
            Style::new().fg(theme.warning),
        )];
        for l in &self.leftovers {
            lines.push(Line::styled(format!("  {}", l.build), bold));
            for r in &l.resources {
                lines.push(Line::raw(format!(
                    "    {:<14} {}{}",
                    format!("{:?}", r.kind),
                    r.name,
                    r.id.as_deref()
                        .filter(|i| *i != r.name)
                        .map(|i| format!("  {i}"))
                        .unwrap_or_default()
                )));
            }
        }
        lines.push(Line::raw(""));
        for (ok, text) in &self.progress {
            let color = if *ok { theme.ok } else { theme.error };
            lines.push(Line::styled(text.clone(), Style::new().fg(color)));
        }
        let keys = |pairs: &[(&str, &str)]| {
            let mut spans = Vec::new();
            for (key, what) in pairs {
                spans.push(Span::styled(format!(" {key}"), bold));
                spans.push(Span::raw(format!(" {what} ")));
            }
            Line::from(spans)
        };
        lines.push(match self.stage {
            Stage::Asking => keys(&[
                ("y", "delete them now"),
                ("n", "leave them (`factory cleanup` deletes them later)"),
            ]),
            Stage::Cleaning => Line::styled("deleting…", Style::new().fg(theme.muted)),
            Stage::Done if self.failures == 0 => Line::from(vec![
                Span::styled("clean: nothing is left. ", Style::new().fg(theme.ok)),
                Span::styled("Enter", bold),
                Span::raw(" close"),
            ]),
            Stage::Done | Stage::Unreadable(_) => Line::from(vec![
                Span::styled(
                    format!(
                        "{} deletion(s) failed: `factory cleanup` retries. ",
                        self.failures
                    ),
                    Style::new().fg(theme.error),
                ),
                Span::styled("Enter", bold),
                Span::raw(" close"),
            ]),
        });
        self.draw_box(frame, theme, lines);
    }

    fn draw_box(&self, frame: &mut Frame, theme: &Theme, lines: Vec<Line<'static>>) {
        let [column] = Layout::horizontal([Constraint::Percentage(90)])
            .flex(Flex::Center)
            .areas(frame.area());
        // As tall as its lines once wrapped (plus borders), within the screen.
        let inner = usize::from(column.width.saturating_sub(2)).max(1);
        let rows: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
        let height = u16::try_from(rows + 2).unwrap_or(u16::MAX);
        let [area] = Layout::vertical([Constraint::Length(height.min(column.height))])
            .flex(Flex::Center)
            .areas(column);
        frame.render_widget(Clear, area);
        let dialog = Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::new().fg(theme.warning))
                .title(" Leftovers in the cloud "),
        );
        frame.render_widget(dialog, area);
    }
}
