//! Loading weights: our own records (safetensors + `config.json`) and the authors' PyTorch
//! checkpoints (legacy pickle `.pth`, keys with a `module.` prefix, four separate LSTM gates).
//!
//! Both paths end in [`apply`], which refuses a file that does not fit the architecture and
//! names every missing, unexpected or mis-shaped tensor. The pickle is parsed by burn-store's
//! reader, which interprets a fixed set of opcodes and never executes anything from the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::tensor::backend::Backend;
use burn::tensor::TensorData;
#[cfg(feature = "zip-pth")]
use burn_store::pytorch::PytorchReader;
use burn_store::{ModuleSnapshot, ModuleStore, SafetensorsStore, TensorSnapshot};

use crate::config::{BrnConfig, CellKind};
use crate::error::ModelError;
use crate::network::Brn;

/// The key under which a record's safetensors metadata carries its [`BrnConfig`] as JSON.
pub const CONFIG_METADATA_KEY: &str = "brn_config";

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
    let mut branches = Vec::new();
    if config.rain_branch {
        let cell_in = c * if config.rain_sees_background() { 3 } else { 2 };
        branches.push((
            "_r",
            "rain",
            config.rain_in_channels(),
            cell_in,
            config.rain_resblocks,
        ));
    }
    let cell_in = c * if config.background_sees_rain() { 3 } else { 2 };
    branches.push((
        "",
        "background",
        config.background_in_channels(),
        cell_in,
        config.background_resblocks,
    ));

    for (s, p, image_in, cell_in, resblocks) in branches {
        conv(format!("conv0{s}.0"), format!("{p}.input"), 0, image_in, c);
        match config.cell {
            CellKind::Lstm => {
                for (part, gate) in ["i", "f", "g", "o"].iter().enumerate() {
                    conv(
                        format!("conv_{gate}{s}.0"),
                        format!("{p}.lstm.gates"),
                        part,
                        cell_in,
                        c,
                    );
                }
            }
            CellKind::Gru => {
                conv(
                    format!("conv_z{s}.0"),
                    format!("{p}.gru.update_reset"),
                    0,
                    cell_in,
                    c,
                );
                conv(
                    format!("conv_b{s}.0"),
                    format!("{p}.gru.update_reset"),
                    1,
                    cell_in,
                    c,
                );
                conv(
                    format!("conv_g{s}.0"),
                    format!("{p}.gru.candidate"),
                    0,
                    cell_in,
                    c,
                );
            }
            CellKind::None => {}
        }
        for k in 0..resblocks {
            conv(
                format!("res_conv{}{s}.0", k + 1),
                format!("{p}.resblocks.{k}.conv1"),
                0,
                c,
                c,
            );
            conv(
                format!("res_conv{}{s}.2", k + 1),
                format!("{p}.resblocks.{k}.conv2"),
                0,
                c,
                c,
            );
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

fn arch_name(config: &BrnConfig) -> String {
    config.describe()
}

fn unreadable(path: &str, reason: impl ToString) -> ModelError {
    ModelError::WeightsUnreadable {
        path: path.to_string(),
        reason: reason.to_string(),
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
    if crate::pickle::is_legacy_torch(bytes) {
        crate::pickle::read_legacy_state_dict(bytes).map_err(|e| unreadable(source, e))
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
    let bytes = std::fs::read(path).map_err(|e| unreadable(&shown, e))?;
    if crate::pickle::is_legacy_torch(&bytes) {
        return read_pytorch_bytes(&bytes, &shown);
    }
    read_zip_pytorch(path, &shown)
}

#[cfg(not(feature = "zip-pth"))]
fn read_zip_pytorch(_path: &Path, shown: &str) -> Result<BTreeMap<String, TensorData>, ModelError> {
    Err(unreadable(
        shown,
        "a zip-format PyTorch file, which this build cannot read (built without the `zip-pth` feature)",
    ))
}

#[cfg(feature = "zip-pth")]
fn read_zip_pytorch(path: &Path, shown: &str) -> Result<BTreeMap<String, TensorData>, ModelError> {
    let shown = shown.to_string();
    let reader = PytorchReader::new(path).map_err(|e| unreadable(&shown, e))?;
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

/// Apply named tensors to a freshly built network; any tensor missing, unused or mis-shaped is an error.
pub fn apply<B: Backend>(
    mut model: Brn<B>,
    snapshots: Vec<TensorSnapshot>,
    source: &str,
) -> Result<Brn<B>, ModelError> {
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

/// A safetensors file's JSON header and the bytes after it.
fn split_safetensors(
    bytes: &[u8],
) -> Result<(serde_json::Map<String, serde_json::Value>, &[u8]), String> {
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or("shorter than a safetensors header")?;
    let end = 8usize.saturating_add(header_len);
    let header = bytes
        .get(8..end)
        .ok_or("the safetensors header is cut short (truncated file?)")?;
    let header = serde_json::from_slice(header)
        .map_err(|e| format!("the safetensors header is not a JSON object: {e}"))?;
    Ok((header, &bytes[end..]))
}

/// The config stored in a record's safetensors metadata, if any.
pub fn record_config(bytes: &[u8]) -> Result<Option<BrnConfig>, String> {
    let (header, _) = split_safetensors(bytes)?;
    match header
        .get("__metadata__")
        .and_then(|m| m.get(CONFIG_METADATA_KEY))
    {
        Some(serde_json::Value::String(json)) => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| format!("the stored config is invalid: {e}")),
        _ => Ok(None),
    }
}

/// Build a network from our record's bytes; `config` is the record's own unless given.
pub fn load_record_bytes<B: Backend>(
    bytes: Vec<u8>,
    config: Option<BrnConfig>,
    source: &str,
    device: &B::Device,
) -> Result<Brn<B>, ModelError> {
    let config = match config {
        Some(config) => config,
        None => record_config(&bytes)
            .map_err(|e| unreadable(source, e))?
            .ok_or_else(|| {
                unreadable(
                    source,
                    "no config in the record and no config.json beside it",
                )
            })?,
    };
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let snapshots: Vec<TensorSnapshot> = store
        .get_all_snapshots()
        .map_err(|e| unreadable(source, e))?
        .values()
        .cloned()
        .collect();
    // Materialise now so that a truncated file fails here, with its name; half-precision
    // records become float32 like the network.
    let snapshots = snapshots
        .iter()
        .map(|snap| {
            let data = snap
                .to_data()
                .map_err(|e| unreadable(source, format!("tensor {}: {e:?}", snap.full_path())))?;
            Ok(snapshot(&snap.full_path(), data.convert::<f32>()))
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    apply(config.init(device)?, snapshots, source)
}

/// The `config.json` that belongs to a record file: beside it, in the same folder.
pub fn config_path_for(record: &Path) -> PathBuf {
    record.with_file_name("config.json")
}

/// Load weights of either format. For an authors' file `config` says the architecture (it has
/// none of its own); for our record it overrides the record's own only in the stage count T.
pub fn load_weights<B: Backend>(
    path: &Path,
    config: &BrnConfig,
    device: &B::Device,
) -> Result<Brn<B>, ModelError> {
    let shown = path.display().to_string();
    let path = if path.is_dir() {
        path.join("model.safetensors")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&path).map_err(|e| unreadable(&shown, e))?;
    let format = WeightsFormat::detect(&bytes);
    if format == Some(WeightsFormat::Pytorch) && !crate::pickle::is_legacy_torch(&bytes) {
        // The zip format is read through burn-store, which wants the file (already read once).
        return from_pytorch(read_zip_pytorch(&path, &shown)?, config, &shown, device);
    }
    let beside = config_path_for(&path);
    let stored = if format == Some(WeightsFormat::Record) && beside.is_file() {
        let json = std::fs::read_to_string(&beside).map_err(|e| unreadable(&shown, e))?;
        Some(serde_json::from_str::<BrnConfig>(&json).map_err(|e| {
            unreadable(
                &shown,
                format!("{} is not a valid config: {e}", beside.display()),
            )
        })?)
    } else {
        None
    };
    load_weights_bytes(bytes, config, stored, &shown, device)
}

/// Load weights of either format from memory (the page's dropped files). An authors' file gets
/// its architecture from `config`; our record uses `stored` when given, else its own metadata.
/// Only the authors' legacy `.pth` format is read from memory; the zip format needs a file.
pub fn load_weights_bytes<B: Backend>(
    bytes: Vec<u8>,
    config: &BrnConfig,
    stored: Option<BrnConfig>,
    source: &str,
    device: &B::Device,
) -> Result<Brn<B>, ModelError> {
    match WeightsFormat::detect(&bytes) {
        Some(WeightsFormat::Pytorch) if crate::pickle::is_legacy_torch(&bytes) => {
            from_pytorch(read_pytorch_bytes(&bytes, source)?, config, source, device)
        }
        Some(WeightsFormat::Pytorch) => Err(unreadable(
            source,
            "a zip-format PyTorch file, which only the command line reads; convert it with `brn export` first",
        )),
        Some(WeightsFormat::Record) => load_record_bytes::<B>(bytes, stored, source, device),
        None => Err(unreadable(
            source,
            "neither an authors' PyTorch checkpoint (.pth) nor our record (.safetensors); empty or not a weights file",
        )),
    }
}

/// Serialise a network as our record (safetensors bytes with its config in the metadata).
pub fn record_bytes<B: Backend>(model: &Brn<B>) -> Result<Vec<u8>, ModelError> {
    let json =
        serde_json::to_string(&model.config).map_err(|e| ModelError::Encode(e.to_string()))?;
    let mut store = SafetensorsStore::from_bytes(None).metadata(CONFIG_METADATA_KEY, json);
    model
        .save_into(&mut store)
        .map_err(|e| ModelError::Encode(e.to_string()))?;
    store
        .get_bytes()
        .map_err(|e| ModelError::Encode(e.to_string()))
}

/// Re-encode a record's float32 tensors as float16 (half the download; the page's default).
/// Loading converts them back to float32.
pub fn record_to_f16(bytes: &[u8]) -> Result<Vec<u8>, ModelError> {
    let bad = |e: &str| ModelError::Encode(format!("not a record: {e}"));
    let (header, data) = split_safetensors(bytes).map_err(|e| bad(&e))?;
    let mut entries: Vec<(String, serde_json::Value)> = header.into_iter().collect();
    let start_of = |v: &serde_json::Value| v["data_offsets"][0].as_u64().unwrap_or(0);
    entries.sort_by_key(|(_, v)| start_of(v));
    let mut out_header = serde_json::Map::new();
    let mut out_data = Vec::with_capacity(data.len() / 2);
    for (name, mut info) in entries {
        if name == "__metadata__" {
            out_header.insert(name, info);
            continue;
        }
        let (start, end) = (
            start_of(&info) as usize,
            info["data_offsets"][1].as_u64().unwrap_or(0) as usize,
        );
        let raw = data
            .get(start..end)
            .ok_or_else(|| bad("tensor data cut short"))?;
        let begin = out_data.len();
        if info["dtype"] == "F32" {
            for chunk in raw.chunks_exact(4) {
                let v = f32::from_le_bytes(chunk.try_into().expect("4 bytes"));
                out_data.extend_from_slice(&burn::tensor::f16::from_f32(v).to_le_bytes());
            }
            info["dtype"] = "F16".into();
        } else {
            out_data.extend_from_slice(raw);
        }
        info["data_offsets"] = serde_json::json!([begin, out_data.len()]);
        out_header.insert(name, info);
    }
    let mut header =
        serde_json::to_vec(&out_header).map_err(|e| ModelError::Encode(e.to_string()))?;
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&out_data);
    Ok(out)
}

/// Precision of the tensors in a written record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Half the size; outputs differ by about 1e-3.
    F16,
}

/// Write our record to `path` and its `config.json` beside it, each atomically (temp file + rename).
pub fn save_record<B: Backend>(
    model: &Brn<B>,
    path: &Path,
    precision: Precision,
) -> Result<(), ModelError> {
    let mut bytes = record_bytes(model)?;
    if precision == Precision::F16 {
        bytes = record_to_f16(&bytes)?;
    }
    let json = serde_json::to_string_pretty(&model.config)
        .map_err(|e| ModelError::Encode(e.to_string()))?;
    crate::io::write_atomic(path, &bytes)?;
    crate::io::write_atomic(&config_path_for(path), json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::Flex;

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
        assert_eq!(record_config(&bytes).unwrap(), Some(config.clone()));
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
}
