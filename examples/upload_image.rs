//! Uploads one image file with the factory's OpenStack client, streamed, and reports the
//! throughput: the counterpart of `openstack image create --file` in `bench/openstack.sh`.
//!
//! ```text
//! OS_CLOUD=sandbox OS_CLIENT_CONFIG_FILE=clouds.yaml \
//!     cargo run --release --example upload_image -- FILE [NAME]
//! ```
//!
//! The cloud is resolved as the factory does (`--cloud` aside): `OS_CLOUD` and clouds.yaml, or
//! the `OS_*` variables.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use image_factory::openstack::config::{CloudConfig, ConfigSources};
use image_factory::openstack::image::NewImage;
use image_factory::openstack::{Cloud, PollPolicy, Wait};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next().map(PathBuf::from) else {
        bail!("usage: upload_image FILE [NAME]");
    };
    let name = args.next().unwrap_or_else(|| "upload-bench".to_string());
    let config = CloudConfig::resolve(None, &ConfigSources::from_process())?
        .context("no cloud configured: set OS_CLOUD (and OS_CLIENT_CONFIG_FILE) or OS_AUTH_URL")?;
    let cloud = Cloud::connect(&config).await?;
    let size = std::fs::metadata(&file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();

    let started = Instant::now();
    let image = cloud
        .create_image(&NewImage {
            name,
            disk_format: "raw".into(),
            container_format: "bare".into(),
            ..NewImage::default()
        })
        .await?;
    cloud.upload_image_file(&image.id, &file, None).await?;
    let wait = Wait {
        timeout: Duration::from_secs(600),
        poll: PollPolicy {
            initial: Duration::from_millis(50),
            factor: 1.5,
            max: Duration::from_secs(1),
        },
    };
    let image = cloud
        .wait_image(&image.id, "active", &wait, &mut |_| {})
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} {} bytes in {seconds:.2} s: {:.0} MiB/s (sha512 {})",
        image.id,
        size,
        size as f64 / seconds / (1024.0 * 1024.0),
        image.os_hash_value.as_deref().unwrap_or("-")
    );
    Ok(())
}
