//! Which cloud a command talks to: the one configured (--cloud / OS_CLOUD with clouds.yaml, or the
//! OS_* variables), else the embedded sandbox cloud, started here and said so plainly.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use image_factory::openstack::Cloud;
use image_factory::openstack::config::{CloudConfig, ConfigSources};
use image_factory::sandbox::{self, Sandbox, SandboxOptions};

pub struct Connected {
    pub cloud: Cloud,
    /// One line for screens and logs: which cloud, and how it was chosen.
    pub label: String,
    /// The embedded sandbox, when no cloud is configured; it stops when dropped.
    pub sandbox: Option<Sandbox>,
}

/// The name under which the sandbox appears in the clouds.yaml it writes.
pub const SANDBOX_CLOUD_NAME: &str = "factory-sandbox";

pub fn sandbox_options(data_dir: &Path) -> SandboxOptions {
    SandboxOptions::new(data_dir.join("sandbox"))
}

/// The configured cloud, else the embedded sandbox (started on `data_dir`).
pub async fn connect(cloud_name: Option<&str>, data_dir: &Path) -> anyhow::Result<Connected> {
    let sources = ConfigSources::from_process();
    if let Some(config) = CloudConfig::resolve(cloud_name, &sources)? {
        let label = format!("cloud: {} ({})", config.origin, host_of(&config.auth_url));
        let cloud = Cloud::connect(&config)
            .await
            .with_context(|| format!("cannot connect to the {label}"))?;
        return Ok(Connected {
            cloud,
            label,
            sandbox: None,
        });
    }
    let sandbox = sandbox::start(sandbox_options(data_dir))
        .await
        .context("no cloud is configured and the embedded sandbox cloud could not start")?;
    let cloud = connect_sandbox(&sandbox).await?;
    Ok(Connected {
        cloud,
        label: format!(
            "cloud: the embedded SANDBOX at {} — no cloud configured (--cloud, OS_CLOUD or OS_AUTH_URL)",
            sandbox.url()
        ),
        sandbox: Some(sandbox),
    })
}

/// A client for a sandbox, with the sandbox's own credentials.
pub async fn connect_sandbox(sandbox: &Sandbox) -> anyhow::Result<Cloud> {
    let env: HashMap<String, String> = [
        ("OS_AUTH_URL", sandbox.auth_url()),
        ("OS_USERNAME", sandbox.username().to_string()),
        ("OS_PASSWORD", sandbox.password().expose().to_string()),
        ("OS_PROJECT_NAME", "admin".to_string()),
        ("OS_USER_DOMAIN_NAME", "Default".to_string()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".to_string()),
        ("OS_REGION_NAME", "RegionOne".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let sources = ConfigSources {
        env,
        search_dirs: Vec::new(),
    };
    let config = CloudConfig::resolve(None, &sources)?
        .context("the sandbox's credentials are incomplete")?;
    Ok(Cloud::connect(&config).await?)
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_string()
}

/// `factory sandbox`: runs the sandbox in the foreground and says how to use it.
pub async fn run_sandbox(data_dir: &Path, port: u16) -> anyhow::Result<()> {
    let mut options = sandbox_options(data_dir);
    options.port = port;
    let sandbox = sandbox::start(options).await?;
    let clouds = sandbox.data_dir().join("clouds.yaml");
    write_private(&clouds, &sandbox.clouds_yaml(SANDBOX_CLOUD_NAME))?;
    println!(
        "Sandbox cloud running at {} (state in {}).",
        sandbox.url(),
        sandbox.data_dir().display()
    );
    println!("Servers: {}.", sandbox.machines());
    println!("Any OpenStack tool can use it:");
    println!();
    println!(
        "  export OS_CLIENT_CONFIG_FILE={} OS_CLOUD={SANDBOX_CLOUD_NAME}",
        clouds.display()
    );
    println!("  openstack server list");
    println!();
    println!("or add this entry under `clouds:` in your clouds.yaml:");
    println!();
    print!("{}", sandbox.clouds_yaml_entry(SANDBOX_CLOUD_NAME));
    println!();
    println!(
        "Ctrl-C stops it and its virtual machines; its images, servers (SHUTOFF) and volumes stay for the next start."
    );
    sandbox.until_ctrl_c().await;
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
