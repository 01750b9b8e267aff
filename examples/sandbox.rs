//! Runs the sandbox cloud in the foreground, for manual use and for the benchmarks in `bench/`:
//!
//! ```text
//! cargo run --release --example sandbox -- DATA_DIR [--port N] [--clouds-yaml PATH] [--fast]
//! ```
//!
//! Prints the cloud's URL, writes a clouds.yaml naming it `sandbox` when asked, and serves until
//! SIGINT or SIGTERM. `--fast` shortens the lifecycles (server builds, snapshots) to 100 ms.

use std::path::PathBuf;

use anyhow::{Context, bail};
use image_factory::sandbox::{self, Delays, SandboxOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut data_dir: Option<PathBuf> = None;
    let mut port = 0u16;
    let mut clouds_yaml: Option<PathBuf> = None;
    let mut fast = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .context("--port needs a number")?
                    .parse()
                    .context("--port needs a number")?;
            }
            "--clouds-yaml" => {
                clouds_yaml = Some(args.next().context("--clouds-yaml needs a path")?.into());
            }
            "--fast" => fast = true,
            other if other.starts_with('-') => bail!("unknown option {other}"),
            other => data_dir = Some(other.into()),
        }
    }
    let Some(data_dir) = data_dir else {
        bail!("usage: sandbox DATA_DIR [--port N] [--clouds-yaml PATH] [--fast]");
    };
    let mut options = SandboxOptions::new(data_dir);
    options.port = port;
    if fast {
        // The benchmark measures the API: states only, no virtual machine.
        options.state_delays = Delays::fast();
        options.machines = image_factory::sandbox::Machines::StateMachine;
    }
    let sandbox = sandbox::start(options).await?;
    if let Some(path) = clouds_yaml {
        std::fs::write(&path, sandbox.clouds_yaml("sandbox"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{}", sandbox.url());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sandbox.shutdown().await;
    Ok(())
}
