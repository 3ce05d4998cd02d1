//! Our record: safetensors with the network's config in its metadata (and a `config.json`
//! beside the file), in float32 or float16.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, ModuleStore, SafetensorsStore, TensorSnapshot};

use super::{apply, snapshot, unreadable, unreadable_from};
use crate::config::BrnConfig;
use crate::error::ModelError;
use crate::network::Brn;

/// The key under which a record's safetensors metadata carries its [`BrnConfig`] as JSON.
pub const CONFIG_METADATA_KEY: &str = "brn_config";

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

/// The config stored in a record's safetensors metadata, if any; `source` names the record
/// in errors.
pub fn record_config(bytes: &[u8], source: &str) -> Result<Option<BrnConfig>, ModelError> {
    let (header, _) = split_safetensors(bytes).map_err(|e| unreadable(source, e))?;
    match header
        .get("__metadata__")
        .and_then(|m| m.get(CONFIG_METADATA_KEY))
    {
        Some(serde_json::Value::String(json)) => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| unreadable_from(source, "the stored config is invalid", e)),
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
        None => record_config(&bytes, source)?.ok_or_else(|| {
            unreadable(
                source,
                "no config in the record and no config.json beside it",
            )
        })?,
    };
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let snapshots: Vec<TensorSnapshot> = store
        .get_all_snapshots()
        .map_err(|e| unreadable_from(source, "its tensors cannot be listed", e))?
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

/// Serialise a network as our record (safetensors bytes with its config in the metadata).
pub fn record_bytes<B: Backend>(model: &Brn<B>) -> Result<Vec<u8>, ModelError> {
    let json =
        serde_json::to_string(&model.config).map_err(|e| ModelError::encode("the config", e))?;
    let mut store = SafetensorsStore::from_bytes(None).metadata(CONFIG_METADATA_KEY, json);
    model
        .save_into(&mut store)
        .map_err(|e| ModelError::encode("the record", e))?;
    store
        .get_bytes()
        .map_err(|e| ModelError::encode("the record", e))
}

/// Re-encode a record's float32 tensors as float16 (half the download; the page's default).
/// Loading converts them back to float32.
pub fn record_to_f16(bytes: &[u8]) -> Result<Vec<u8>, ModelError> {
    let bad = |e: &str| ModelError::encode("the record as float16", format!("not a record: {e}"));
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
    let mut header = serde_json::to_vec(&out_header)
        .map_err(|e| ModelError::encode("the record's header", e))?;
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
    /// Full precision, as trained.
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
        .map_err(|e| ModelError::encode("the config", e))?;
    crate::io::write_atomic(path, &bytes)?;
    crate::io::write_atomic(&config_path_for(path), json.as_bytes())
}
