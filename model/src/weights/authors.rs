//! The authors' checkpoints: their key layout (four separate LSTM gates, a `module.` prefix),
//! the mapping onto our fused parameters, finding which architecture a file holds, and
//! reading `.pth` files (legacy pickle with our reader, zip with burn-store's).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::TensorData;
#[cfg(feature = "zip-pth")]
use burn_store::pytorch::PytorchReader;
use burn_store::TensorSnapshot;

use super::{apply, arch_name, snapshot, unreadable, unreadable_from};
use crate::config::{BrnConfig, CellKind};
use crate::error::ModelError;
use crate::network::Brn;

/// One tensor of an authors' checkpoint and where it goes in our network.
#[derive(Clone, Debug)]
pub struct AuthorsTensor {
    /// Key in the authors' state dict, without `module.`.
    pub key: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Our parameter path (`background.lstm.gates.weight`).
    pub target: String,
    /// Its position among the tensors concatenated (along dim 0) into `target`.
    pub part: usize,
}

/// The recurrent cell's convolutions in the authors' files: their name, our parameter (in
/// the branch) and its part, in the authors' order.
fn cell_convolutions(cell: CellKind) -> &'static [(&'static str, &'static str, usize)] {
    match cell {
        CellKind::Lstm => &[
            ("conv_i", "lstm.gates", 0),
            ("conv_f", "lstm.gates", 1),
            ("conv_g", "lstm.gates", 2),
            ("conv_o", "lstm.gates", 3),
        ],
        CellKind::Gru => &[
            ("conv_z", "gru.update_reset", 0),
            ("conv_b", "gru.update_reset", 1),
            ("conv_g", "gru.candidate", 0),
        ],
        CellKind::None => &[],
    }
}

/// The authors' key layout for `config`: every tensor the forward pass uses, in order.
pub fn authors_layout(config: &BrnConfig) -> Vec<AuthorsTensor> {
    let c = config.channels;
    let mut out = Vec::new();
    let mut conv = |key: String, target: String, part: usize, cin: usize, cout: usize| {
        out.push(AuthorsTensor {
            key: format!("{key}.weight"),
            shape: vec![cout, cin, 3, 3],
            target: format!("{target}.weight"),
            part,
        });
        out.push(AuthorsTensor {
            key: format!("{key}.bias"),
            shape: vec![cout],
            target: format!("{target}.bias"),
            part,
        });
    };
    // (the authors' key suffix, our branch, image channels in, cell channels in, ResBlocks)
    let mut branches = Vec::new();
    if config.rain_branch {
        let cell_in = c * if config.rain_sees_background() { 3 } else { 2 };
        let image_in = config.rain_in_channels();
        branches.push(("_r", "rain", image_in, cell_in, config.rain_resblocks));
    }
    let cell_in = c * if config.background_sees_rain() { 3 } else { 2 };
    let image_in = config.background_in_channels();
    branches.push((
        "",
        "background",
        image_in,
        cell_in,
        config.background_resblocks,
    ));

    for (s, p, image_in, cell_in, resblocks) in branches {
        conv(format!("conv0{s}.0"), format!("{p}.input"), 0, image_in, c);
        for &(name, target, part) in cell_convolutions(config.cell) {
            conv(
                format!("{name}{s}.0"),
                format!("{p}.{target}"),
                part,
                cell_in,
                c,
            );
        }
        for k in 0..resblocks {
            let (key, target) = (
                format!("res_conv{}{s}", k + 1),
                format!("{p}.resblocks.{k}"),
            );
            conv(format!("{key}.0"), format!("{target}.conv1"), 0, c, c);
            conv(format!("{key}.2"), format!("{target}.conv2"), 0, c, c);
        }
        conv(format!("conv{s}.0"), format!("{p}.output"), 0, c, 3);
    }
    out
}

/// Tensors the authors store but their forward pass never uses (BRN's F_r keeps 5 ResBlocks, uses 3).
fn stored_but_unused(config: &BrnConfig, key: &str) -> bool {
    config.rain_branch
        && (config.rain_resblocks + 1..=5).any(|k| key.starts_with(&format!("res_conv{k}_r.")))
}

/// The architectures an authors' file may hold, in the order [`identify`] tries them: where two
/// share a layout (BRN and its x→r / r→x variants, for one) the first, the paper's main model,
/// is taken; `--arch` picks another.
pub const AUTHORS_PRESETS: [&str; 12] = [
    "brn",
    "prenet",
    "prn",
    "brn-gru",
    "prenet-gru",
    "crn",
    "srn-plus",
    "srn-lstm",
    "srn-gru",
    "srn-x",
    "brn-r2x",
    "brn-x2r",
];

/// The architecture (at its default T) whose layout an authors' state dict fits: every tensor
/// its forward pass uses is there with its shape, and nothing else but what the authors store
/// unused. `None` if no known architecture fits.
pub fn identify(tensors: &BTreeMap<String, TensorData>) -> Option<BrnConfig> {
    let keys: BTreeMap<&str, Vec<usize>> = tensors
        .iter()
        .map(|(k, v)| (k.strip_prefix("module.").unwrap_or(k), v.shape.to_vec()))
        .collect();
    AUTHORS_PRESETS.iter().find_map(|name| {
        let config = BrnConfig::preset(name).ok()?;
        let layout = authors_layout(&config);
        let all_there = layout
            .iter()
            .all(|t| keys.get(t.key.as_str()) == Some(&t.shape));
        let nothing_else = keys
            .keys()
            .all(|key| layout.iter().any(|t| t.key == *key) || stored_but_unused(&config, key));
        (all_there && nothing_else).then_some(config)
    })
}

/// Map an authors' state dict onto our parameter names, fusing the gate convolutions.
pub fn from_authors(
    tensors: BTreeMap<String, TensorData>,
    config: &BrnConfig,
    source: &str,
) -> Result<Vec<TensorSnapshot>, ModelError> {
    let tensors: BTreeMap<String, TensorData> = tensors
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), v))
        .collect();
    let layout = authors_layout(config);
    let mut problems = Vec::new();
    let mut parts: BTreeMap<String, Vec<(usize, TensorData)>> = BTreeMap::new();
    for entry in &layout {
        match tensors.get(&entry.key) {
            None => problems.push(format!("  missing: {} {:?}", entry.key, entry.shape)),
            Some(data) if data.shape.to_vec() != entry.shape => problems.push(format!(
                "  wrong shape: {} is {:?}, expected {:?}",
                entry.key,
                data.shape.to_vec(),
                entry.shape
            )),
            Some(data) => parts
                .entry(entry.target.clone())
                .or_default()
                .push((entry.part, data.clone())),
        }
    }
    for key in tensors.keys() {
        if !layout.iter().any(|e| &e.key == key) && !stored_but_unused(config, key) {
            problems.push(format!("  unexpected: {key}"));
        }
    }
    if !problems.is_empty() {
        return Err(ModelError::WeightsMismatch {
            path: source.to_string(),
            arch: arch_name(config),
            details: problems.join("\n"),
        });
    }
    parts
        .into_iter()
        .map(|(target, mut pieces)| {
            pieces.sort_by_key(|(part, _)| *part);
            let data = concat_dim0(pieces.into_iter().map(|(_, d)| d).collect())
                .map_err(|e| unreadable(source, format!("{target}: {e}")))?;
            Ok(snapshot(&target, data))
        })
        .collect()
}

/// Concatenate tensors along their first (outermost) dimension.
fn concat_dim0(pieces: Vec<TensorData>) -> Result<TensorData, String> {
    if pieces.len() == 1 {
        return Ok(pieces.into_iter().next().expect("one piece"));
    }
    let mut shape = pieces[0].shape.to_vec();
    shape[0] = pieces.iter().map(|p| p.shape[0]).sum();
    let mut values = Vec::with_capacity(shape.iter().product());
    for piece in pieces {
        values.extend(
            piece
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?,
        );
    }
    Ok(TensorData::new(values, shape))
}

/// Read an authors' checkpoint from memory: the legacy format (all the authors' files).
pub fn read_pytorch_bytes(
    bytes: &[u8],
    source: &str,
) -> Result<BTreeMap<String, TensorData>, ModelError> {
    if super::pickle::is_legacy_torch(bytes) {
        super::pickle::read_legacy_state_dict(bytes)
            .map_err(|e| unreadable_from(source, "its PyTorch pickle cannot be read", e))
    } else {
        Err(unreadable(
            source,
            "only the legacy torch.save format can be read from memory; re-save it with \
             torch.save(state_dict, f, _use_new_zipfile_serialization=False) or load it from a file",
        ))
    }
}

/// Read an authors' `.pth` file into named tensors (float32): the legacy format with our own
/// reader, the zip format (PyTorch ≥ 1.6) with burn-store's.
pub fn read_pytorch(path: &Path) -> Result<BTreeMap<String, TensorData>, ModelError> {
    let shown = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| unreadable_from(&shown, "the file cannot be read", e))?;
    if super::pickle::is_legacy_torch(&bytes) {
        return read_pytorch_bytes(&bytes, &shown);
    }
    read_zip_pytorch(path, &shown)
}

#[cfg(not(feature = "zip-pth"))]
pub(super) fn read_zip_pytorch(
    _path: &Path,
    shown: &str,
) -> Result<BTreeMap<String, TensorData>, ModelError> {
    Err(unreadable(
        shown,
        "a zip-format PyTorch file, which this build cannot read (built without the `zip-pth` feature)",
    ))
}

#[cfg(feature = "zip-pth")]
pub(super) fn read_zip_pytorch(
    path: &Path,
    shown: &str,
) -> Result<BTreeMap<String, TensorData>, ModelError> {
    let shown = shown.to_string();
    let reader = PytorchReader::new(path)
        .map_err(|e| unreadable_from(&shown, "not a PyTorch zip file we can read", e))?;
    reader
        .into_tensors()
        .into_iter()
        .map(|(key, snap)| {
            let data = snap.to_data().map_err(|e| {
                unreadable(
                    &shown,
                    format!("tensor {key}: {e:?} (is the file truncated?)"),
                )
            })?;
            Ok((key, data.convert::<f32>()))
        })
        .collect()
}

/// Build a network of `config` from an authors' state dict.
pub fn from_pytorch<B: Backend>(
    tensors: BTreeMap<String, TensorData>,
    config: &BrnConfig,
    source: &str,
    device: &B::Device,
) -> Result<Brn<B>, ModelError> {
    let snapshots = from_authors(tensors, config, source)?;
    apply(config.init(device)?, snapshots, source)
}
