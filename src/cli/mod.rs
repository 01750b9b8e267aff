//! The command line (clap): the console by default, plus headless subcommands for scripts and CI.
//!
//! Exit codes: 0 success, 1 the thing checked is wrong (validation errors, failed render),
//! 2 the command could not run (bad arguments, no repository).

mod build;
mod cleanup;
mod cloud;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use image_factory::catalog::{self, Catalog, Definition, Severity};
use image_factory::engine::events::BuildResult;
use image_factory::history::History;
use image_factory::paths;
use image_factory::render::{self, BuildInfo};

const AFTER_HELP: &str = "\
A factory repository holds bundles under images/<name>/ and OS definitions under os/<name>/,
each with a build-vars.yml, an ansible/bootstrap.yml playbook and output/*.j2 templates.

Examples:
  factory                          open the console on the repository around the current directory
  factory list --json              the catalog as JSON, for scripts
  factory validate                 check every definition (exit 1 on errors), for CI and pre-commit
  factory render bundle-bookworm-lamp --image-id 6f1c...  render its HEAT stack";

#[derive(Parser, Debug)]
#[command(
    name = "factory",
    version,
    about = "Build OpenStack server images and the HEAT stacks that use them",
    long_about = "Build OpenStack server images and the HEAT stacks that use them.\n\n\
                  Without a subcommand, opens the console: the repository's bundles and OS \
                  definitions, with each one's validation problems.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// The factory repository (default: the current directory, or the nearest parent holding
    /// images/ or os/)
    #[arg(long, global = true, value_name = "DIR", env = "FACTORY_REPO")]
    repo: Option<PathBuf>,

    /// Where the factory keeps build history, journals and caches (default:
    /// ~/.local/share/image-factory)
    #[arg(long, global = true, value_name = "DIR", env = "FACTORY_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// The cloud (a clouds.yaml entry; default: OS_CLOUD, else the OS_* variables, else the
    /// embedded sandbox cloud)
    #[arg(long, global = true, value_name = "NAME")]
    cloud: Option<String>,

    /// Console colours: themes/NAME.toml of the repository, or a built-in theme (default,
    /// high-contrast)
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "FACTORY_THEME",
        default_value = "default"
    )]
    theme: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the bundles and OS definitions of the repository, with their status
    #[command(
        after_help = "Columns: KIND (bundle|os), NAME (the directory, what other commands \
                            take), IMAGE (bundle.name), BASE (bundle.img_base or the OS source), \
                            STATUS (ok, or the count of errors and warnings; `factory validate` \
                            shows them).\n--json prints every field, settings with defaults \
                            applied, and every problem with file, line and column."
    )]
    List {
        /// Print JSON (an object with `root`, `definitions` and `problems`) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Check definitions and print every problem as file:line:column: level: message
    #[command(
        after_help = "Exit status: 0 when no definition has errors (warnings are printed \
                            but do not fail), 1 when one has errors, 2 when the repository or a \
                            named definition is not found. Use it in CI or as a pre-commit hook: \
                            `factory validate || exit 1`."
    )]
    Validate {
        /// Definitions to check (directory names under images/ or os/); all when none is given
        names: Vec<String>,
        /// Fail (exit 1) on warnings too
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Render a definition's output/**/*.j2 templates (its HEAT stacks) for an image id
    #[command(
        after_help = "Templates see `result_img_id`, `bundle` and every other top-level key \
                            of build-vars.yml, and `build` (id, date, image_name). An undefined \
                            variable is an error naming the template's file and line. Outputs go \
                            to images/target/NAME/output/ unless --out is given; each file is \
                            written whole or not at all."
    )]
    Render {
        /// The definition (directory name under images/ or os/)
        name: String,
        /// The Glance image id to put into the templates (result_img_id)
        #[arg(long, value_name = "ID")]
        image_id: String,
        /// Write the rendered files here instead of images/target/NAME/output
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Build bundles or OS definitions, headless: a timestamped log (or JSON lines), for CI
    #[command(
        after_help = "Exit status: 0 when every build succeeded, 1 when one failed or was \
                            cancelled, 2 when a build could not start (unknown or invalid \
                            definition, already building), 130 after SIGINT/SIGTERM/SIGHUP (the \
                            builds are cancelled and cleaned up first; a second signal leaves at \
                            once and `factory cleanup` removes what is left).\n\
                            With no cloud configured, builds run in the embedded sandbox cloud."
    )]
    Build {
        /// Definitions to build (directory names under images/ or os/)
        #[arg(required = true)]
        names: Vec<String>,
        /// On failure, keep the builder server (and its keypair and security group) for SSH
        /// triage; the log says how to reach it and how to clean up
        #[arg(long)]
        keep_on_error: bool,
        /// Print one JSON object per event instead of the readable log
        #[arg(long)]
        json: bool,
        /// Build even if the same definition is already building
        #[arg(long)]
        force: bool,
        /// How many builds run at once
        #[arg(long, default_value_t = 2, value_name = "N")]
        parallel: usize,
    },
    /// Show which older images of OS definitions retention would delete or hide; --apply does it
    #[command(
        after_help = "Each OS definition keeps its newest `retention.keep` images (default 3); \
                            older ones are deleted or hidden (`retention.action`). Images are found \
                            by the property factory_definition that every factory build sets. \
                            Without --apply nothing changes: a dry run."
    )]
    Retention {
        /// OS definitions (all of os/ when none is given)
        names: Vec<String>,
        /// Delete or hide the retired images (default: only show them)
        #[arg(long)]
        apply: bool,
    },
    /// Delete cloud resources that crashed or kept builds left behind (from their journals)
    Cleanup {
        /// Delete without asking
        #[arg(long)]
        yes: bool,
    },
    /// Run the sandbox cloud in the foreground and print the clouds.yaml entry to use it
    #[command(
        after_help = "The sandbox serves Keystone, Nova, Glance, Neutron, Cinder, Heat and \
                            Swift on 127.0.0.1; its state lives under the data directory \
                            (sandbox/) and survives restarts."
    )]
    Sandbox {
        /// Port to listen on (0: a free one)
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// List past builds, newest first: id, outcome, duration, and where a failed one stopped
    History {
        /// Only builds that did not succeed (failed, cancelled, interrupted)
        #[arg(long)]
        failed: bool,
        /// Only builds of this definition
        name: Option<String>,
    },
    /// Print the full log of a build (a build id from `factory history`, or a definition name
    /// for its newest build)
    Logs { build: String },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "Example: factory completions bash > /etc/bash_completion.d/factory")]
    Completions { shell: clap_complete::Shell },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("factory: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(paths::data_dir);
    if let Some(Command::Completions { shell }) = &cli.command {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "factory",
            &mut std::io::stdout(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let history = History::new(&data_dir);
    match &cli.command {
        Some(Command::History { failed, name }) => {
            return history_cmd(&history, *failed, name.as_deref());
        }
        Some(Command::Logs { build }) => {
            let dir = history.find(build)?;
            print!("{}", image_factory::history::read_log(&dir)?);
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    if let Some(Command::Sandbox { port }) = &cli.command {
        runtime()?.block_on(cloud::run_sandbox(&data_dir, *port))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(Command::Cleanup { yes }) = &cli.command {
        return runtime()?.block_on(cleanup::run(&data_dir, cli.cloud.as_deref(), *yes));
    }
    let catalog = load_catalog(cli.repo.as_deref())?;
    if let Some(Command::Build {
        names,
        keep_on_error,
        json,
        force,
        parallel,
    }) = cli.command
    {
        let args = build::BuildArgs {
            names,
            keep_on_error,
            json,
            force,
            parallel,
        };
        return runtime()?.block_on(build::run(
            args,
            &catalog.root,
            &data_dir,
            cli.cloud.as_deref(),
        ));
    }
    if let Some(Command::Retention { names, apply }) = &cli.command {
        return runtime()?.block_on(retention_cmd(
            &catalog,
            names,
            *apply,
            &data_dir,
            cli.cloud.as_deref(),
        ));
    }
    match cli.command {
        None => {
            let theme = crate::tui::theme::Theme::load(&catalog.root, &cli.theme)?;
            let rt = runtime()?;
            // The console shows which cloud it would build in; connecting (or starting the
            // sandbox, whose QEMU probe takes seconds) must not keep the catalog from showing.
            let cloud_line =
                std::sync::Arc::new(std::sync::Mutex::new("cloud: connecting…".to_string()));
            let line = cloud_line.clone();
            let cloud_name = cli.cloud.clone();
            let dir = data_dir.clone();
            let repo_root = catalog.root.clone();
            let (commands, mut command_rx) = tokio::sync::mpsc::unbounded_channel();
            let (event_tx, events) = std::sync::mpsc::channel();
            let connecting = rt.spawn(async move {
                let connected = cloud::connect(cloud_name.as_deref(), &dir).await;
                let text = match &connected {
                    Ok(c) => c.label.clone(),
                    Err(e) => format!("cloud: NOT CONNECTED: {e:#}"),
                };
                if let Ok(mut l) = line.lock() {
                    *l = text;
                }
                let connected = connected.ok()?;
                // The console's engine: its events go to the screen, the screen's commands to it.
                let engine = build::engine(&connected, &repo_root, &dir, 2);
                let mut subscription = engine.subscribe();
                tokio::spawn(async move {
                    use tokio::sync::broadcast::error::RecvError;
                    loop {
                        match subscription.recv().await {
                            Ok(event) => {
                                if event_tx.send(event).is_err() {
                                    break;
                                }
                            }
                            Err(RecvError::Lagged(_)) => {}
                            Err(RecvError::Closed) => break,
                        }
                    }
                });
                let commanded = engine.clone();
                tokio::spawn(async move {
                    while let Some(command) = command_rx.recv().await {
                        // A refused clean-up also ends with its CleanupFinished event.
                        if let Err(e) = commanded.execute(command).await {
                            tracing::warn!("console command refused: {e}");
                        }
                    }
                });
                Some((connected, engine))
            });
            // Every build's journal is read: off the screen's thread, which draws at once.
            let (found, leftovers) = std::sync::mpsc::channel();
            let journals = data_dir.clone();
            rt.spawn_blocking(move || {
                let _ = found.send(
                    image_factory::engine::cleanup::find_leftovers(&journals)
                        .map_err(|e| e.to_string()),
                );
            });
            let link = crate::tui::EngineLink {
                commands,
                events,
                leftovers,
            };
            crate::tui::run(&catalog, theme, &cloud_line, link)?;
            if let Ok(Some((connected, engine))) = rt.block_on(connecting) {
                // Quitting cancels what runs; clean-ups end before the sandbox stops.
                rt.block_on(async {
                    engine
                        .execute(image_factory::engine::events::Command::CancelAll)
                        .await
                        .ok();
                    engine.wait_idle().await;
                });
                if let Some(sandbox) = connected.sandbox {
                    rt.block_on(sandbox.shutdown());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::List { json }) => list(&catalog, json),
        Some(Command::Validate {
            names,
            deny_warnings,
        }) => validate(&catalog, &names, deny_warnings),
        Some(Command::Render {
            name,
            image_id,
            out,
        }) => render_cmd(&catalog, &name, &image_id, out.as_deref()),
        Some(
            Command::Completions { .. }
            | Command::History { .. }
            | Command::Logs { .. }
            | Command::Build { .. }
            | Command::Cleanup { .. }
            | Command::Retention { .. }
            | Command::Sandbox { .. },
        ) => Ok(ExitCode::SUCCESS),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn load_catalog(repo: Option<&Path>) -> anyhow::Result<Catalog> {
    let root = match repo {
        Some(dir) => dir.to_path_buf(),
        None => catalog::find_root(&std::env::current_dir()?)?,
    };
    Ok(Catalog::load(&root)?)
}

fn status(def: &Definition) -> String {
    let count = |s| def.problems.iter().filter(|p| p.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => "ok".into(),
        (0, w) => format!("ok, {}", plural(w, "warning")),
        (e, 0) => plural(e, "error"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    }
}

/// What a definition starts from, in a few words.
pub fn base_of(def: &Definition) -> String {
    let Some(spec) = &def.spec else {
        return "-".into();
    };
    if let Some(base) = &spec.img_base {
        return base.clone();
    }
    match &spec.source {
        Some(src) => {
            let mut kinds = Vec::new();
            if src.upstream.is_some() {
                kinds.push("url");
            }
            if src.debootstrap.is_some() {
                kinds.push("debootstrap");
            }
            format!("source: {}", kinds.join(" + "))
        }
        None => "-".into(),
    }
}

fn list(catalog: &Catalog, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, catalog)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 5]> = catalog
        .definitions
        .iter()
        .map(|d| {
            [
                d.kind.label().to_string(),
                d.name.clone(),
                d.spec.as_ref().map_or("-".into(), |s| s.image_name.clone()),
                base_of(d),
                status(d),
            ]
        })
        .collect();
    let header = ["KIND", "NAME", "IMAGE", "BASE", "STATUS"].map(String::from);
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .chain(std::iter::once(&header))
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    if catalog.definitions.is_empty() {
        writeln!(out, "(no definitions in {})", catalog.root.display())?;
    }
    for p in &catalog.problems {
        writeln!(out, "{p}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(catalog: &Catalog, names: &[String], deny_warnings: bool) -> anyhow::Result<ExitCode> {
    let selected: Vec<&Definition> = if names.is_empty() {
        catalog.definitions.iter().collect()
    } else {
        names
            .iter()
            .map(|n| catalog.find(n))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?
    };
    let problems: Vec<_> = catalog
        .problems
        .iter()
        .chain(selected.iter().flat_map(|d| d.problems.iter()))
        .collect();
    let mut out = std::io::stdout().lock();
    for p in &problems {
        writeln!(out, "{p}")?;
    }
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let warnings = problems.len() - errors;
    let broken = selected.iter().filter(|d| d.has_errors()).count();
    writeln!(
        out,
        "{} definition{} checked: {} with errors; {errors} error{}, {warnings} warning{}",
        selected.len(),
        if selected.len() == 1 { "" } else { "s" },
        broken,
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
    )?;
    let failed = errors > 0 || (deny_warnings && warnings > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn render_cmd(
    catalog: &Catalog,
    name: &str,
    image_id: &str,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let def = catalog.find(name).map_err(anyhow::Error::msg)?;
    let Some(spec) = &def.spec else {
        for p in &def.problems {
            eprintln!("{p}");
        }
        eprintln!("factory: `{name}` has errors: fix them before rendering");
        return Ok(ExitCode::FAILURE);
    };
    let now = chrono::Utc::now();
    let build = BuildInfo {
        id: format!("manual-{}", now.format("%Y%m%dT%H%M%SZ")),
        date: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        image_name: catalog::image_name(&spec.settings.image_name, &spec.image_name, now),
    };
    match render::render_definition(&catalog.root, def, image_id, &build, out) {
        Ok(done) if done.is_empty() => {
            println!("{name} has no output/*.j2 templates: nothing to render");
            Ok(ExitCode::SUCCESS)
        }
        Ok(done) => {
            for r in done {
                println!("{} -> {}", r.template.display(), r.output.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn history_cmd(history: &History, failed: bool, name: Option<&str>) -> anyhow::Result<ExitCode> {
    let builds: Vec<_> = history
        .list()?
        .into_iter()
        .filter(|b| !failed || b.failed())
        .filter(|b| name.is_none_or(|n| b.id.definition == n))
        .collect();
    if builds.is_empty() {
        println!("no builds recorded yet");
        return Ok(ExitCode::SUCCESS);
    }
    for b in builds {
        let duration = b
            .duration
            .map(|d| {
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
            })
            .unwrap_or_else(|| "-".into());
        let detail = match &b.result {
            Some(BuildResult::Succeeded {
                image_name,
                image_id,
            }) => format!("{image_name} ({image_id})"),
            Some(BuildResult::Failed { phase, error, .. }) => {
                format!("in {}: {error}", phase.label())
            }
            Some(BuildResult::Cancelled { phase }) => phase
                .map(|p| format!("during {}", p.label()))
                .unwrap_or_default(),
            None => b
                .last_phase
                .map(|p| {
                    format!(
                        "stopped during {}; `factory cleanup` removes what it left",
                        p.label()
                    )
                })
                .unwrap_or_default(),
        };
        println!("{}  {:<11} {:>8}  {detail}", b.id, b.outcome(), duration);
    }
    Ok(ExitCode::SUCCESS)
}

async fn retention_cmd(
    catalog: &Catalog,
    names: &[String],
    apply: bool,
    data_dir: &Path,
    cloud_name: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use image_factory::catalog::Kind;
    use image_factory::engine::retention;
    let defs: Vec<&Definition> = if names.is_empty() {
        catalog
            .definitions
            .iter()
            .filter(|d| d.kind == Kind::Os)
            .collect()
    } else {
        names
            .iter()
            .map(|n| catalog.find(n))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?
    };
    let connected = cloud::connect(cloud_name, data_dir).await?;
    println!("{}", connected.label);
    let mut failures = 0;
    for def in defs {
        let Some(spec) = &def.spec else {
            println!(
                "{}: has errors, skipped (`factory validate {}`)",
                def.name, def.name
            );
            continue;
        };
        let r = &spec.settings.retention;
        let plan = retention::plan(&connected.cloud, &def.name, r.keep, r.action).await?;
        let verb = match r.action {
            image_factory::catalog::RetentionAction::Delete => "delete",
            image_factory::catalog::RetentionAction::Hide => "hide",
        };
        println!(
            "{}: {} image(s), keep the newest {}",
            def.name,
            plan.keep.len() + plan.retire.len(),
            r.keep
        );
        for i in &plan.keep {
            println!("  keep    {} {}", i.id, i.name.as_deref().unwrap_or("-"));
        }
        for i in &plan.retire {
            println!("  {verb:<7} {} {}", i.id, i.name.as_deref().unwrap_or("-"));
        }
        if apply {
            failures += retention::apply(&connected.cloud, &plan, |image, result| {
                if let Err(e) = result {
                    println!("  FAILED to {verb} {}: {e}", image.id);
                }
            })
            .await;
        }
    }
    if !apply {
        println!("dry run: nothing changed; --apply carries it out");
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
