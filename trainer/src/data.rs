//! Paired test sets: which rainy file goes with which clean one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One rainy image and its clean ground truth.
#[derive(Clone, Debug)]
pub struct Pair {
    pub name: String,
    pub rainy: PathBuf,
    pub clean: PathBuf,
}

/// Image files of a folder, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image_name(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a path has an image file extension we decode.
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "png" | "jpg" | "jpeg" | "tif" | "tiff" | "bmp" | "webp"
            )
        })
        .unwrap_or(false)
}

/// Pairs of a test set in one of the layouts we know:
/// - Rain100L/H: `DIR/rainy/rain-N.png` with `DIR/norain-N.png`;
/// - generic: `DIR/rainy/NAME` with `DIR/clean/NAME` (same file names).
pub fn pairs(dir: &Path) -> Result<Vec<Pair>> {
    let rainy_dir = dir.join("rainy");
    if !rainy_dir.is_dir() {
        bail!(
            "{} has no 'rainy/' folder; expected DIR/rainy/rain-N.png + DIR/norain-N.png (Rain100L) or DIR/rainy/NAME + DIR/clean/NAME",
            dir.display()
        );
    }
    let clean_dir = dir.join("clean");
    let mut out = Vec::new();
    for rainy in image_files(&rainy_dir)? {
        let name = rainy
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .to_string();
        let clean = if clean_dir.is_dir() {
            clean_dir.join(&name)
        } else if let Some(rest) = name.strip_prefix("rain-") {
            dir.join(format!("norain-{rest}"))
        } else {
            bail!(
                "{}: no clean/ folder and the name does not follow rain-N",
                rainy.display()
            );
        };
        if !clean.is_file() {
            bail!(
                "{} has no ground truth: {} is missing",
                rainy.display(),
                clean.display()
            );
        }
        out.push(Pair { name, rainy, clean });
    }
    if out.is_empty() {
        bail!("{} holds no images", rainy_dir.display());
    }
    Ok(out)
}
