//! Where the factory keeps its own data (build history, journals, caches, the sandbox cloud).

use std::path::PathBuf;

/// Overrides the data directory, for tests and for operators who keep data on another disk.
pub const DATA_DIR_ENV: &str = "FACTORY_DATA_DIR";

/// `$FACTORY_DATA_DIR`, else the platform's data directory (~/.local/share/image-factory).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("", "", "image-factory")
        .map(|p| p.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".image-factory"))
}
