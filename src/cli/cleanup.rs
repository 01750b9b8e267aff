//! `factory cleanup`: deletes what crashed or kept builds left in the cloud, from their journals.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use image_factory::engine::cleanup;
use image_factory::engine::events::{Command, Event};
use tokio::sync::broadcast::error::RecvError;

use super::build::Printer;
use super::cloud;

pub async fn run(data_dir: &Path, cloud_name: Option<&str>, yes: bool) -> anyhow::Result<ExitCode> {
    let leftovers = cleanup::find_leftovers(data_dir)?;
    if leftovers.is_empty() {
        println!("nothing to clean up: every build's journal is empty");
        return Ok(ExitCode::SUCCESS);
    }
    let count: usize = leftovers.iter().map(|l| l.resources.len()).sum();
    println!("{count} resource(s) left by {} build(s):", leftovers.len());
    for l in &leftovers {
        println!("  {}", l.build);
        for r in &l.resources {
            println!(
                "    {:<15} {}{} ({:?})",
                format!("{:?}", r.kind),
                r.name,
                r.id.as_deref().map(|i| format!(" {i}")).unwrap_or_default(),
                r.state
            );
        }
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            println!("rerun with --yes to delete them");
            return Ok(ExitCode::FAILURE);
        }
        print!("Delete them? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing deleted");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let connected = cloud::connect(cloud_name, data_dir).await?;
    println!("{}", connected.label);
    // The engine deletes, as for the console: one way to clean up. It builds nothing here, so
    // the repository it is given does not matter.
    let engine = super::build::engine(&connected, Path::new("."), data_dir, 1);
    let out = Printer::new(false);
    let mut events = engine.subscribe();
    let mut pending = HashSet::new();
    let mut failures = 0;
    for l in &leftovers {
        let Some(id) = l.id() else {
            println!("skipped {}: not a build directory of this factory", l.build);
            failures += 1;
            continue;
        };
        match engine.execute(Command::CleanUp(id.clone())).await {
            Ok(_) => {
                pending.insert(id);
            }
            Err(e) => {
                println!("skipped {}: {e}", l.build);
                failures += 1;
            }
        }
    }
    while !pending.is_empty() {
        match events.recv().await {
            Ok(event) if pending.contains(event.build_id()) => {
                out.event(&event);
                if let Event::CleanupFinished { id, failures: f } = &event {
                    failures += f.len();
                    pending.remove(id);
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => break,
        }
    }
    Ok(if failures == 0 {
        println!("clean");
        ExitCode::SUCCESS
    } else {
        println!("{failures} deletion(s) failed: rerun `factory cleanup` once the cloud answers");
        ExitCode::FAILURE
    })
}
