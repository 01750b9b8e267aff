//! Lists the images of a cloud with the factory's OpenStack client, one `id name status` a line:
//! the counterpart of `openstack image list` in `bench/openstack.sh` (start-up, Keystone, one
//! list call).
//!
//! ```text
//! OS_CLOUD=sandbox OS_CLIENT_CONFIG_FILE=clouds.yaml cargo run --release --example list_images
//! ```

use anyhow::Context;
use image_factory::openstack::Cloud;
use image_factory::openstack::config::{CloudConfig, ConfigSources};
use image_factory::openstack::image::ImageFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = CloudConfig::resolve(None, &ConfigSources::from_process())?
        .context("no cloud configured: set OS_CLOUD (and OS_CLIENT_CONFIG_FILE) or OS_AUTH_URL")?;
    let cloud = Cloud::connect(&config).await?;
    for image in cloud.list_images(&ImageFilter::default()).await? {
        println!(
            "{} {} {}",
            image.id,
            image.name.as_deref().unwrap_or(""),
            image.status
        );
    }
    Ok(())
}
