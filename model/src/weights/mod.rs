//! Loading weights: our own records (safetensors + `config.json`) and the authors' PyTorch
//! checkpoints (legacy pickle `.pth`, keys with a `module.` prefix, four separate LSTM gates).
//!
//! Both paths end in [`apply`], which refuses a file that does not fit the architecture, naming
//! every missing, unexpected or mis-shaped tensor, or that holds NaN or infinite values. An
//! authors' file does not say which network it belongs to: [`identify`] finds the architecture
//! from its tensor names and shapes, so both front ends load any file with [`load_any`] or
//! [`load_file`]. The legacy pickle is parsed by our own reader (`pickle.rs`), which interprets
//! a fixed set of opcodes and never executes anything from the file.

mod authors;
mod pickle;
mod record;

pub use authors::{
    authors_layout, from_authors, from_pytorch, identify, read_pytorch, read_pytorch_bytes,
    AuthorsTensor, AUTHORS_PRESETS,
};
pub use record::{
    config_path_for, load_record_bytes, record_bytes, record_config, record_to_f16, save_record,
    Precision, CONFIG_METADATA_KEY,
};

use std::path::Path;

use burn::module::ParamId;
use burn::tensor::backend::Backend;
use burn::tensor::TensorData;
use burn_store::{ModuleSnapshot, TensorSnapshot};

use crate::config::BrnConfig;
use crate::error::{Cause, ModelError};
use crate::network::Brn;

/// The kinds of weight file we read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsFormat {
    /// The authors' `torch.save` state dict (legacy pickle or zip).
    Pytorch,
    /// Our record: safetensors with the config in its metadata and/or a `config.json` beside it.
    Record,
}

impl WeightsFormat {
    /// Recognise a file by its first bytes.
    pub fn detect(head: &[u8]) -> Option<Self> {
        match head {
            [0x80, 0x02, 0x8a, 0x0a, ..] | [b'P', b'K', 3, 4, ..] => Some(Self::Pytorch),
            [_, _, _, _, _, _, _, _, b'{', ..] => Some(Self::Record),
            _ => None,
        }
    }
}

fn arch_name(config: &BrnConfig) -> String {
    config.describe()
}

fn unreadable(path: &str, reason: impl ToString) -> ModelError {
    ModelError::WeightsUnreadable {
        path: path.to_string(),
        reason: reason.to_string(),
        source: None,
    }
}

/// [`unreadable`] for `reason`, as the reader underneath (`source`) says.
fn unreadable_from(path: &str, reason: impl ToString, source: impl Into<Cause>) -> ModelError {
    ModelError::WeightsUnreadable {
        path: path.to_string(),
        reason: reason.to_string(),
        source: Some(source.into()),
    }
}

fn snapshot(path: &str, data: TensorData) -> TensorSnapshot {
    TensorSnapshot::from_data(
        data,
        path.split('.').map(str::to_string).collect(),
        Vec::new(),
        ParamId::new(),
    )
}

/// Apply named tensors to a freshly built network; any tensor missing, unused or mis-shaped is
/// an error, and so is a NaN or infinite value (a damaged file or a diverged training run).
pub fn apply<B: Backend>(
    mut model: Brn<B>,
    snapshots: Vec<TensorSnapshot>,
    source: &str,
) -> Result<Brn<B>, ModelError> {
    for snap in &snapshots {
        let finite = snap
            .to_data()
            .ok()
            .and_then(|data| data.convert::<f32>().into_vec::<f32>().ok())
            .is_none_or(|values| values.iter().all(|v| v.is_finite()));
        if !finite {
            return Err(ModelError::WeightsNotFinite {
                path: source.to_string(),
                tensor: snap.full_path(),
            });
        }
    }
    let result = model.apply(snapshots, None, None, false);
    let mut problems: Vec<String> = Vec::new();
    problems.extend(
        result
            .missing
            .iter()
            .map(|(p, _)| format!("  missing: {p}")),
    );
    problems.extend(result.unused.iter().map(|p| format!("  unexpected: {p}")));
    problems.extend(result.errors.iter().map(|e| format!("  {e}")));
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(ModelError::WeightsMismatch {
            path: source.to_string(),
            arch: arch_name(&model.config),
            details: problems.join("\n"),
        })
    }
}

/// Load weights of either format, with `config` as the architecture of an authors' file (it
/// has none of its own); our record carries its own. See [`load_file`] to find the architecture.
pub fn load_weights<B: Backend>(
    path: &Path,
    config: &BrnConfig,
    device: &B::Device,
) -> Result<Brn<B>, ModelError> {
    load_file(path, Some(config), device)
}

/// Load weights of either format from a file (or a folder holding `model.safetensors`). Our
/// record carries its architecture (in its metadata, or `config.json` beside it); an authors'
/// `.pth` gets `arch` when given, else the architecture [`identify`] finds, at that
/// architecture's default T.
pub fn load_file<B: Backend>(
    path: &Path,
    arch: Option<&BrnConfig>,
    device: &B::Device,
) -> Result<Brn<B>, ModelError> {
    let shown = path.display().to_string();
    let path = if path.is_dir() {
        path.join("model.safetensors")
    } else {
        path.to_path_buf()
    };
    let bytes =
        std::fs::read(&path).map_err(|e| unreadable_from(&shown, "the file cannot be read", e))?;
    let format = WeightsFormat::detect(&bytes);
    if format == Some(WeightsFormat::Pytorch) && !pickle::is_legacy_torch(&bytes) {
        // The zip format is read through burn-store, which wants the file (already read once).
        let tensors = authors::read_zip_pytorch(&path, &shown)?;
        return from_authors_file(tensors, arch, &shown, device);
    }
    let beside = config_path_for(&path);
    let stored =
        if format == Some(WeightsFormat::Record) && beside.is_file() {
            let config = beside.display();
            let json = std::fs::read_to_string(&beside)
                .map_err(|e| unreadable_from(&shown, format!("{config} cannot be read"), e))?;
            Some(serde_json::from_str::<BrnConfig>(&json).map_err(|e| {
                unreadable_from(&shown, format!("{config} is not a valid config"), e)
            })?)
        } else {
            None
        };
    load_bytes(bytes, arch, stored, &shown, device)
}

/// Load weights of either format from memory (a file dropped on the page, the built-in
/// default): our record with its own config, an authors' legacy `.pth` with `arch` when given,
/// else the architecture [`identify`] finds. `source` names the weights in errors.
pub fn load_any<B: Backend>(
    bytes: Vec<u8>,
    arch: Option<&BrnConfig>,
    source: &str,
    device: &B::Device,
) -> Result<Brn<B>, ModelError> {
    load_bytes(bytes, arch, None, source, device)
}

fn load_bytes<B: Backend>(
    bytes: Vec<u8>,
    arch: Option<&BrnConfig>,
    stored: Option<BrnConfig>,
    source: &str,
    device: &B::Device,
) -> Result<Brn<B>, ModelError> {
    match WeightsFormat::detect(&bytes) {
        Some(WeightsFormat::Pytorch) if pickle::is_legacy_torch(&bytes) => {
            from_authors_file(read_pytorch_bytes(&bytes, source)?, arch, source, device)
        }
        Some(WeightsFormat::Pytorch) => Err(unreadable(
            source,
            "a PyTorch file in the zip format (PyTorch 1.6 and later), which only the command line reads; re-save it with torch.save(state_dict, f, _use_new_zipfile_serialization=False)",
        )),
        Some(WeightsFormat::Record) => load_record_bytes::<B>(bytes, stored, source, device),
        None => Err(unreadable(
            source,
            "neither an authors' PyTorch checkpoint (.pth) nor our record (.safetensors); empty or not a weights file",
        )),
    }
}

/// An authors' state dict as a network of `arch`, or of the architecture it fits.
fn from_authors_file<B: Backend>(
    tensors: std::collections::BTreeMap<String, TensorData>,
    arch: Option<&BrnConfig>,
    source: &str,
    device: &B::Device,
) -> Result<Brn<B>, ModelError> {
    let config = match arch {
        Some(config) => config.clone(),
        None => identify(&tensors).ok_or_else(|| ModelError::WeightsUnknown {
            path: source.to_string(),
            known: AUTHORS_PRESETS.join(", "),
        })?,
    };
    from_pytorch(tensors, &config, source, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::Flex;
    use std::collections::BTreeMap;

    #[test]
    fn the_brn_layout_counts_the_papers_parameters() {
        let n: usize = authors_layout(&BrnConfig::brn())
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum();
        assert_eq!(n, 375_526);
    }

    #[test]
    fn records_round_trip_and_carry_their_config() {
        let device = Default::default();
        let config = BrnConfig::crn().with_stages(3).with_rain_resblocks(1);
        let model = config.init::<Flex>(&device).unwrap();
        let bytes = record_bytes(&model).unwrap();
        assert_eq!(WeightsFormat::detect(&bytes), Some(WeightsFormat::Record));
        assert_eq!(record_config(&bytes, "mem").unwrap(), Some(config.clone()));
        let loaded = load_record_bytes::<Flex>(bytes.clone(), None, "mem", &device).unwrap();
        let x = burn::tensor::Tensor::<Flex, 4>::ones([1, 3, 5, 6], &device) * 0.3;
        let a = model.forward(x.clone()).background.into_data();
        let b = loaded.forward(x).background.into_data();
        a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::absolute(0.0));

        // Another architecture is refused, naming the tensors.
        let err = load_record_bytes::<Flex>(bytes.clone(), Some(BrnConfig::brn()), "mem", &device)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("missing") && msg.contains("resblocks"),
            "{msg}"
        );

        // A half-precision copy loads and computes nearly the same function.
        let half = record_to_f16(&bytes).unwrap();
        assert!(
            half.len() < bytes.len() * 6 / 10,
            "{} vs {}",
            half.len(),
            bytes.len()
        );
        let loaded = load_record_bytes::<Flex>(half, None, "mem", &device).unwrap();
        let x = burn::tensor::Tensor::<Flex, 4>::ones([1, 3, 5, 6], &device) * 0.3;
        let c = loaded.forward(x).background.into_data();
        a.assert_approx_eq::<f32>(&c, burn::tensor::Tolerance::absolute(1e-2));

        // A truncated record is refused.
        let cut = bytes[..bytes.len() / 2].to_vec();
        assert!(load_record_bytes::<Flex>(cut, None, "mem", &device).is_err());
    }

    #[test]
    fn identify_tells_the_architectures_apart_by_layout() {
        // A state dict laid out as each architecture stores it is identified as the first
        // architecture with that layout (the order of AUTHORS_PRESETS); the ones the authors
        // published are told apart exactly.
        let as_stored = |name: &str| -> BTreeMap<String, TensorData> {
            authors_layout(&BrnConfig::preset(name).unwrap())
                .into_iter()
                .map(|t| {
                    let n = t.shape.iter().product::<usize>();
                    (
                        format!("module.{}", t.key),
                        TensorData::new(vec![0f32; n], t.shape),
                    )
                })
                .collect()
        };
        for name in AUTHORS_PRESETS {
            let found = identify(&as_stored(name)).expect("every preset is identified");
            let layout = |c: &BrnConfig| {
                authors_layout(c)
                    .into_iter()
                    .map(|t| (t.key, t.shape))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                layout(&found),
                layout(&BrnConfig::preset(name).unwrap()),
                "{name}"
            );
        }
        for name in ["brn", "prenet", "prn", "brn-gru", "prenet-gru"] {
            assert_eq!(
                identify(&as_stored(name)),
                Some(BrnConfig::preset(name).unwrap()),
                "{name}"
            );
        }
        let mut extra = as_stored("brn");
        extra.insert("head.weight".into(), TensorData::new(vec![0f32; 3], [3]));
        assert_eq!(identify(&extra), None);
        assert_eq!(identify(&BTreeMap::new()), None);
    }

    #[test]
    fn junk_and_non_finite_weights_are_refused_by_name() {
        let device = Default::default();
        let err = load_any::<Flex>(b"not weights at all".to_vec(), None, "x.bin", &device)
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a weights file"), "{err}");
        // A record whose one tensor went NaN (a diverged run, a damaged file).
        let config = BrnConfig::brn().with_channels(4).with_stages(1);
        let net = config.init::<Flex>(&device).unwrap();
        let mut bytes = record_bytes(&net).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let (name, info) = header
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| *k != "__metadata__")
            .unwrap();
        let from = 8 + n + info["data_offsets"][0].as_u64().unwrap() as usize;
        bytes[from..from + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        let err = load_any::<Flex>(bytes, None, "run.safetensors", &device)
            .err()
            .unwrap();
        assert!(
            matches!(&err, ModelError::WeightsNotFinite { tensor, .. } if tensor == name),
            "{err}"
        );
        assert!(err.to_string().contains(name.as_str()), "{err}");
    }
}
