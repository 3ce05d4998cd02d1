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

#[derive(Clone, Copy)]
enum Layout {
    Rain100,
    Rain1400,
    Generic,
}

/// Pairs of a test set in one of the layouts we know:
/// - Rain100L/H: `DIR/rainy/rain-N.png` with `DIR/norain-N.png`;
/// - Rain1400/Rain12600: `DIR/rainy_image/I_J.jpg` (J-th rain of scene I) with `DIR/ground_truth/I.jpg`;
/// - generic: `DIR/rainy/NAME` with `DIR/clean/NAME` (same file names).
pub fn pairs(dir: &Path) -> Result<Vec<Pair>> {
    let (rainy_dir, layout) = if dir.join("rainy_image").is_dir() {
        (dir.join("rainy_image"), Layout::Rain1400)
    } else if dir.join("rainy").is_dir() {
        let layout = if dir.join("clean").is_dir() {
            Layout::Generic
        } else {
            Layout::Rain100
        };
        (dir.join("rainy"), layout)
    } else {
        bail!(
            "{} has neither 'rainy/' nor 'rainy_image/'; expected DIR/rainy/rain-N.png + DIR/norain-N.png (Rain100L/H), DIR/rainy_image/I_J.jpg + DIR/ground_truth/I.jpg (Rain1400/12600) or DIR/rainy/NAME + DIR/clean/NAME",
            dir.display()
        );
    };
    let mut out = Vec::new();
    for rainy in image_files(&rainy_dir)? {
        let name = rainy
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .to_string();
        let clean = match layout {
            Layout::Generic => dir.join("clean").join(&name),
            Layout::Rain100 => match name.strip_prefix("rain-") {
                Some(rest) => dir.join(format!("norain-{rest}")),
                None => bail!(
                    "{}: no clean/ folder and the name does not follow rain-N",
                    rainy.display()
                ),
            },
            Layout::Rain1400 => {
                let ext = rainy.extension().and_then(|e| e.to_str()).unwrap_or("jpg");
                let stem = rainy.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                match stem.rsplit_once('_') {
                    Some((scene, _)) => dir.join("ground_truth").join(format!("{scene}.{ext}")),
                    None => bail!(
                        "{}: a rainy_image/ file must be named SCENE_N (Rain1400 layout)",
                        rainy.display()
                    ),
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn the_three_paired_layouts_are_recognised() {
        let root = std::env::temp_dir().join(format!("brn-layouts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Rain100L/H.
        let r100 = root.join("rain100");
        touch(&r100.join("rainy/rain-1.png"));
        touch(&r100.join("norain-1.png"));
        let p = pairs(&r100).unwrap();
        assert_eq!(p[0].clean, r100.join("norain-1.png"));
        // Rain1400: fourteen rains of scene 7 share ground_truth/7.jpg.
        let r1400 = root.join("rain1400");
        touch(&r1400.join("rainy_image/7_1.jpg"));
        touch(&r1400.join("rainy_image/7_14.jpg"));
        touch(&r1400.join("ground_truth/7.jpg"));
        let p = pairs(&r1400).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p
            .iter()
            .all(|p| p.clean == r1400.join("ground_truth/7.jpg")));
        // Generic rainy/ + clean/.
        let generic = root.join("generic");
        touch(&generic.join("rainy/a.png"));
        touch(&generic.join("clean/a.png"));
        assert_eq!(
            pairs(&generic).unwrap()[0].clean,
            generic.join("clean/a.png")
        );
        // A missing ground truth is named.
        touch(&r1400.join("rainy_image/8_1.jpg"));
        let err = pairs(&r1400).unwrap_err().to_string();
        assert!(err.contains("8.jpg"), "{err}");
        // Neither layout.
        assert!(pairs(&root).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
