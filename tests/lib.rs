//! Helpers for the workspace-level tests: where `../shared` is, and reading `.npy` files.

use std::path::{Path, PathBuf};

/// The shared folder (paper, checkpoints, golden outputs, data): `$BRN_SHARED`, else `../shared`
/// beside the repository.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("BRN_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

/// `Some(path)` inside the shared folder, or `None` after printing why the test is skipped.
/// With `BRN_REQUIRE_SHARED=1` (test.sh sets it) a missing path fails the test instead, so that
/// a run without the data cannot pass untested.
pub fn shared(relative: &str) -> Option<PathBuf> {
    let path = shared_dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "{} is absent (set BRN_SHARED to the shared folder)",
        path.display()
    );
    assert!(
        !shared_required(),
        "{why}; BRN_REQUIRE_SHARED=1 forbids skipping"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// Whether tests must fail rather than skip without the shared folder (`BRN_REQUIRE_SHARED=1`).
pub fn shared_required() -> bool {
    std::env::var("BRN_REQUIRE_SHARED").is_ok_and(|v| v == "1")
}

/// A float32 little-endian C-order `.npy` array: (shape, values).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{} is not a .npy file",
        path.display()
    );
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'"),
        "{}: only <f4 supported: {header}",
        path.display()
    );
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        values.len(),
        shape.iter().product::<usize>(),
        "{}",
        path.display()
    );
    (shape, values)
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
