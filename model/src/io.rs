//! Files: listing a folder's images, and writing so that nothing is ever half-written.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::ModelError;

/// Write `bytes` to `path` through a temporary file in the same folder and a rename, so that
/// `path` either keeps its old content or gets all of the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let fail = |source| ModelError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        let not_a_file = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path");
        fail(not_a_file)
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// The image files of a folder (by extension: PNG, JPEG, TIFF, BMP, WebP), sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image_name(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a path has the extension of an image format we decode.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_files_are_listed_by_extension_in_name_order() {
        let dir = std::env::temp_dir().join(format!("brn-io-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub.png")).unwrap();
        for name in ["b.PNG", "a.jpg", "notes.txt", "c.webp"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let names: Vec<String> = image_files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["a.jpg", "b.PNG", "c.webp"]);
        let err = image_files(&dir.join("absent")).unwrap_err();
        assert_eq!(err.kind(), "read");
        assert!(err.to_string().contains("absent"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
